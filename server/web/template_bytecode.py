"""The templates compiled once, at install, as pip compiles the hub's modules: the web server only reads them.

Jinja turns a template into Python source and compiles that the first time a
page uses it, and the compiler's garbage stays in the web server's heap: the
bench page (with base.html and its includes) left it about 1.3 MB bigger at
rest, and its first visitor waited for the compiler (issue 14). So
hub_setup/install.sh runs ``python -m server.web.template_bytecode`` after pip,
as root: every template's bytecode goes to ``templates/__pycache__`` beside
them, readable by the hub and written by nobody else, like the modules' own
``.pyc`` files. The web server reads what it finds there and compiles anything
else as before, in memory: it never writes code (the units' venv is read-only
to it, and a folder the service could write would let whoever takes it over
plant code that outlives a restart). Jinja checks each template's checksum,
and Python's and Jinja's versions, so a changed template is compiled afresh;
each install rewrites the folder whole.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from flask import Flask
from jinja2 import FileSystemBytecodeCache
from jinja2.bccache import Bucket

FOLDER = Path(__file__).resolve().parents[1] / "templates" / "__pycache__"


class _ReadOnly(FileSystemBytecodeCache):
    def dump_bytecode(self, bucket: Bucket) -> None:
        """Nothing: only the install writes compiled templates (see the module's docstring)."""


def init_app(app: Flask, folder: Path = FOLDER) -> None:
    app.jinja_env.bytecode_cache = _ReadOnly(str(folder))


def compile_all(folder: Path = FOLDER) -> int:
    """Compile every template of the web app into ``folder`` (emptied first), readable by all; how many."""
    from server import create_app

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="safebench-templates-") as instance:
        # An app of its own on an empty instance: only its templates are used, never a database.
        app = create_app({"INSTANCE": instance, "SECRET_KEY": "compiling templates only"})
        app.jinja_env.bytecode_cache = FileSystemBytecodeCache(str(folder))
        names = app.jinja_env.list_templates()
        for name in names:
            app.jinja_env.get_template(name)
    for written in folder.iterdir():
        os.chmod(written, 0o644)  # Jinja writes each through a private temporary file
    os.chmod(folder, 0o755)
    return len(names)


if __name__ == "__main__":
    compile_all(Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDER)
