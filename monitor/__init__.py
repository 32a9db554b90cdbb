"""asewatch: a crash-dump and stability monitor for SAP (Sybase) Adaptive Server Enterprise."""

__version__ = "0.1.0"
