"""``garrison kek rotate``: re-seal the store's keys under a new key-encryption key.

The old KEK comes from the config's ``store.kek`` and is only read; the new one from
``--new-kek-file`` (0600; ``--generate`` creates it). Afterwards the operator points ``store.kek``
at the new file and restarts the control plane. Prints KEK ids, never KEK bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from garrison.cli.api import CliError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("kek", help="manage the key-encryption key that seals the control plane's keys")
    ksub = p.add_subparsers(dest="kek_command", required=True, metavar="ACTION")
    r = ksub.add_parser(
        "rotate",
        help="re-seal every stored key under a new KEK (stop the control plane first)",
        description=(
            "Re-seal the CA keys, token signing keys and KEK check under the KEK in --new-kek-file, in "
            "one transaction. Then set store.kek to the new file and restart the control plane."
        ),
    )
    r.add_argument(
        "-c", "--config", required=True, help="path to garrison.yaml (its store.kek is the old KEK)"
    )
    r.add_argument("--new-kek-file", required=True, help="file (mode 0600) holding the new base64 KEK")
    r.add_argument(
        "--generate", action="store_true", help="create --new-kek-file with a random KEK (never overwrites)"
    )
    r.set_defaults(func=rotate_command)


def rotate_command(args: argparse.Namespace) -> int:
    from garrison.config.loader import load_config
    from garrison.config.models import StoreConfig
    from garrison.control.kek_rotation import rotate_kek
    from garrison.control.plane import load_kek, resolve, store_target
    from garrison.identity.ca.sealing import Kek, generate_kek_file
    from garrison.store import Store

    config_path = Path(args.config)
    cfg = load_config(config_path)
    base_dir = config_path.resolve().parent
    store_cfg = cfg.store or StoreConfig()
    new_path = Path(args.new_kek_file).expanduser().resolve()
    old_file = store_cfg.kek.file
    if old_file is not None and resolve(base_dir, old_file).resolve() == new_path:
        raise CliError(f"--new-kek-file {new_path} is the KEK file the config already uses; give a new file")
    from garrison.control.lock import RunningLock

    old = load_kek(store_cfg.kek, base_dir)
    store = Store.open(store_target(store_cfg, base_dir))
    try:
        # A control plane running on this store would go on sealing under the old KEK: refuse.
        with RunningLock(store, "KEK rotation"):
            new = generate_kek_file(new_path) if args.generate else Kek.from_file(new_path)
            done = rotate_kek(store, old, new)
    finally:
        store.close()
    print(done.summary())
    print(f"now set store.kek.file to {new_path} in {config_path} and restart the control plane;")
    print("keep the old KEK until then (and in backups sealed under it), then destroy it")
    return 0


__all__ = ["add_parser", "rotate_command"]
