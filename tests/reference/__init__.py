"""float64 numpy reference twins of every compiled kernel, one module per kernel:

* ``debye``: the Debye double sum (forward, and its gradient) of ``xstructure.simulate`` / ``ops.debye``;
* ``kabsch``: SVD superposition RMSD of ``xstructure.rmsd`` / ``ops.kabsch_rmsd``;
* ``radial``: the radial histogram of ``xstructure.Integrator``;
* ``structure_factors``: the structure-factor double sum of ``xstructure.crystal.structure_factors``.
* ``pumpprobe``: the block pass of ``xstructure.experiment.PumpProbe.reduce`` (the reduction's former numpy path).

The density-grid and powder kernels are checked against brute-force sums and FFTs in their tests and against
pymatgen (powder).
"""
