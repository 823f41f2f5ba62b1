"""The config.cfg that points QMonit at the private servers and the simulator: one writer for
the tests, the demo and the backtest."""
from . import devservers
from .simulator import config_urls


def config_text(influx_url, mysql_port, database, sim_url, data_dir, **sections):
    """INI text for the private servers and the simulator at sim_url; `sections` adds or
    overrides keys per section ({"panda": {"timeout": 5}, ...})."""
    urls = config_urls(sim_url)
    config = {
        "credentials": {"username": devservers.DB_USER, "password": devservers.DB_PASSWORD,
                        "database": database},
        "influxdb": {"url": influx_url},
        "mysql": {"host": "127.0.0.1", "port": mysql_port},
        "panda": {"url": urls["panda_url"]},
        "cric": {f"{kind}_url": urls[f"{kind}_url"]
                 for kind in ("pandaqueue", "site", "ddmendpoint", "federation")},
        "paths": {"data_dir": data_dir},
    }
    for name, keys in sections.items():
        config.setdefault(name, {}).update(keys)
    return "\n".join(f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())
                     for name, keys in config.items())
