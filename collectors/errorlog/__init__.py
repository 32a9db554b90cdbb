"""The ASE errorlog: a streaming parser over bytes and a live follower.

``ErrorlogParser`` turns bytes into typed records (errors, configuration changes,
boots, shutdowns, crash blocks); ``parse_file`` runs it over a plain or gzipped file.
"""

from collectors.errorlog.parser import ErrorlogParser, ParserState
from collectors.errorlog.reader import parse_file

__all__ = ["ErrorlogParser", "ParserState", "parse_file"]
