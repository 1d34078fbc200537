"""Live analysis at the beamline: frames from a facility's stream in, radial profiles, ΔI/I and structures out,
with a view in the browser.

Sources, one module per protocol: the Karabo bridge (:mod:`.karabo`, European XFEL), DECTRIS SIMPLON stream v2
(:mod:`.simplon`), EPICS PV Access NTNDArray (:mod:`.pva`, areaDetector) and a growing HDF5 file or a folder of
files (:mod:`.hdf5`); :func:`open_source` picks one from a URL.  :class:`Pipeline` receives (in its own thread),
integrates, reduces (:class:`xstructure.experiment.RunningReduction`), optionally inverts each shot with a trained
model, appends to an HDF5 file (:class:`LiveFile`) and publishes on ZeroMQ (:class:`Publisher`), accounting for
every frame; :mod:`.view` serves the live page; :mod:`.simulate` streams a simulated pump-probe experiment over any
of the protocols; :func:`run_live` is what ``xstructure live`` runs.
"""

from .frames import EndOfStream, Frames, Keys, Rejected, Source, SourceError
from .outputs import LiveFile, Publisher, read_live, subscribe
from .pipeline import POLICIES, Pipeline, Summary
from .replay import ArraySource
from .simulate import PROTOCOLS, SimulatedRun, serve
from .state import Counts, Snapshot
from .urls import open_source, parse_source

__all__ = [
           "POLICIES",
           "PROTOCOLS",
           "ArraySource",
           "Counts",
           "EndOfStream",
           "Frames",
           "Keys",
           "LiveFile",
           "Pipeline",
           "Publisher",
           "Rejected",
           "SimulatedRun",
           "Snapshot",
           "Source",
           "SourceError",
           "Summary",
           "open_source",
           "parse_source",
           "read_live",
           "serve",
           "subscribe",
]
