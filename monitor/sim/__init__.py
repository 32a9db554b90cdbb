"""The simulated dataserver: a faithful stand-in for an SAP ASE ``dataserver`` process.

It is a real OS process (``/proc/PID/comm`` is ``dataserver``) that writes a real-format
errorlog, runs a workload of stored-procedure calls, crashes with a real SIGSEGV after
writing a crash block and a shared-memory dump file, and is restarted by a supervisor
the way a RUN_ file plus an operator would. Tests and ``asewatch demo`` drive it through
:class:`monitor.sim.control.SimServer`; ``python -m monitor.sim`` runs it by hand.

The package imports nothing at import time so that the dataserver process starts fast.
"""
