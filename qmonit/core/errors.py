"""The exceptions that carry QMonit's exit codes; only a script's main() turns them into one."""


class QMonitError(Exception):
    """A run that failed: exit status 1."""

    exit_code = 1


class ConfigError(QMonitError):
    """Bad configuration: exit status 2. The message names the file and the key."""

    exit_code = 2

    def __init__(self, path, reason, section=None, key=None):
        where = str(path)
        if section and key:
            where += f": [{section}] {key}"
        elif section:
            where += f": [{section}]"
        super().__init__(f"{where}: {reason}")


class UsageError(QMonitError):
    """Bad command-line usage: exit status 2."""

    exit_code = 2


class SourceError(QMonitError):
    """A source (PanDA, CRIC, MONIT) failed or sent a bad payload. Names the URL."""

    def __init__(self, url, reason):
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


class SinkError(QMonitError):
    """A sink (InfluxDB, MySQL, a file) could not be written. Names the server.

    safe: the points are kept anyway (spooled for the next run, or written after all)."""

    safe = False

    def __init__(self, target, reason):
        self.target = target
        self.reason = reason
        super().__init__(f"{target}: {reason}")
