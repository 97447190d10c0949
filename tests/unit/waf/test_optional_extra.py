"""Without the optional `waf` extra, garrison still imports and runs; a `waf:` config says what to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["msc_pyparser"] = None  # as if the `waf` extra were not installed: import fails
    from pathlib import Path
    from garrison.config.loader import parse_config
    from garrison.proxy.build import build_runtimes
    from garrison.proxy.upstream import Pools
    import garrison.demo.tour, garrison.proxy.gateway, garrison.waf  # all import without the engine
    cfg = parse_config(sys.argv[1])
    try:
        build_runtimes(cfg, pools=Pools(), observe=lambda *a: None, authenticators=(), base_dir=Path("."))
    except Exception as exc:
        print(type(exc).__name__, exc)
    """
)


def test_without_the_waf_extra_a_waf_config_names_what_to_install(tmp_path: Path) -> None:
    config = 'listeners: [{name: edge, address: "127.0.0.1:0"}]\nwaf: {}\n'
    config += 'routes: [{name: r, path: /x, upstream: "http://127.0.0.1:9", public: true}]\n'
    r = subprocess.run([sys.executable, "-c", SCRIPT, config], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "ConfigError" in r.stdout and "pip install 'garrison[waf]'" in r.stdout, r.stdout
