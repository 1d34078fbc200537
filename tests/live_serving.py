"""A protocol server run by a script in a thread, for the live sources' tests (imported by them)."""

import threading


class Serving:
    """Run ``script(server, stop)`` in a thread on a started server; re-raise its error on exit.

    With ``hold``, the server stays open after the script until the test leaves the block (a PUSH socket must not
    close before the test has read everything)."""

    def __init__(self, server, script, *, hold: bool = False):
        self.server, self.stop, self.error = server, threading.Event(), None
        server.start()

        def run():
            try:
                script(server, self.stop)
                if hold:
                    self.stop.wait(10)
            except BaseException as e:  # noqa: BLE001 - handed to the test's thread
                self.error = e
            finally:
                server.close()

        self.thread = threading.Thread(target=run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the server thread did not finish"
        if self.error is not None and exc[0] is None:
            raise self.error
