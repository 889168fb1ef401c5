"""The templates compiled at install (server/web/template_bytecode.py): the web server reads them and writes none."""

from __future__ import annotations

import stat

import jinja2

from server.web import template_bytecode


def test_the_install_compiles_every_template_and_the_bench_page_is_served_without_the_compiler(app, tmp_path):
    folder = tmp_path / "compiled"
    count = template_bytecode.compile_all(folder)
    written = sorted(folder.iterdir())
    assert count == len(app.jinja_env.list_templates()) == len(written)
    # Root compiles them at install; the hub's own user reads them, and nothing more.
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o644 for path in written)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755

    template_bytecode.init_app(app, folder)

    def no_compiler(*args, **kwargs):
        raise AssertionError("a template was compiled although the install compiled it")

    app.jinja_env.compile = no_compiler
    page = app.test_client().get("/")
    assert page.status_code == 200 and "<html" in page.get_data(as_text=True)


def test_a_changed_template_is_compiled_afresh_in_memory_and_nothing_is_written(app, tmp_path):
    folder = tmp_path / "compiled"
    template_bytecode.compile_all(folder)
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "note.html").write_text("old {{ word }}")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)))
    env.bytecode_cache = jinja2.FileSystemBytecodeCache(str(folder))
    env.get_template("note.html")  # as an install would have compiled it
    compiled = {path.name: path.read_bytes() for path in folder.iterdir()}
    assert len(compiled) == len(before) + 1

    (templates / "note.html").write_text("new {{ word }}")  # an upgrade's template, the old bytecode beside it
    served = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)))
    template_bytecode.init_app(app, folder)
    served.bytecode_cache = app.jinja_env.bytecode_cache
    assert served.get_template("note.html").render(word="page") == "new page"
    (templates / "other.html").write_text("other")
    assert served.get_template("other.html").render() == "other"
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == compiled  # the web server wrote none
