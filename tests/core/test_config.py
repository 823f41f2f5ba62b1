import pytest

from qmonit.core import config as config_module
from qmonit.core.errors import ConfigError


def load(tmp_path, text, name="config.cfg"):
    path = tmp_path / name
    path.write_text(text)
    return config_module.load(str(path), str(tmp_path / "script.py"))


def test_typed_getters_and_defaults(tmp_path):
    cfg = load(tmp_path, "[panda]\ntime_window = 20 ; inline comment\napi = legacy\n"
                         "[influxdb]\nverify_ssl = no\n")
    assert cfg.get_int("panda", "time_window", 10) == 20
    assert cfg.get("panda", "api") == "legacy"
    assert cfg.get_bool("influxdb", "verify_ssl", True) is False
    assert cfg.get_float("panda", "timeout", 120) == 120
    assert cfg.data_dir() == tmp_path / "data"


def test_errors_name_file_section_and_key(tmp_path):
    cfg = load(tmp_path, "[panda]\ntime_window = ten\n")
    with pytest.raises(ConfigError) as e:
        cfg.get_int("panda", "time_window", 10)
    assert str(tmp_path / "config.cfg") in str(e.value)
    assert "[panda] time_window" in str(e.value) and "'ten'" in str(e.value)
    with pytest.raises(ConfigError, match=r"\[panda\] url: missing"):
        cfg.get("panda", "url")
    assert e.value.exit_code == 2


def test_unparsable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot parse"):
        load(tmp_path, "no section header\n")


def test_resolution_order(tmp_path, monkeypatch):
    script = tmp_path / "fetch_queues.py"
    monkeypatch.delenv("QMONIT_CONFIG", raising=False)
    assert config_module.resolve_path(None, script) == tmp_path / "config.cfg"
    monkeypatch.setenv("QMONIT_CONFIG", "/etc/qmonit.cfg")
    assert str(config_module.resolve_path(None, script)) == "/etc/qmonit.cfg"
    assert str(config_module.resolve_path("/x.cfg", script)) == "/x.cfg"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        config_module.load(str(tmp_path / "nope.cfg"), str(tmp_path / "s.py"))


def test_example_documents_every_key_read_by_the_code(tmp_path):
    """Every (section, key) the package reads has a line in config.cfg.example."""
    import configparser
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    example = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
    example.read(root / "config.cfg.example")
    pattern = re.compile(
        r"""get(?:_int|_float|_bool|_list|_choice|_path)?\(\s*"(\w+)",\s*"(\w+)\"""")
    sources = [p for p in (root / "qmonit").rglob("*.py")] + list(root.glob("*.py"))
    read = {m.groups() for p in sources for m in pattern.finditer(p.read_text())}
    assert read, "the pattern found no config reads"
    missing = sorted(f"[{s}] {k}" for s, k in read if not example.has_option(s, k))
    assert not missing, f"config.cfg.example lacks {missing}"
