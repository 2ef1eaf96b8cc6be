"""Every text the pages can show has a Romanian translation, and the catalogue is well formed."""

from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path

import jinja2
from jinja2.ext import extract_from_ast

import backoffice
from backoffice.i18n import LANGUAGES, catalogue

PACKAGE = Path(backoffice.__file__).parent
#: calls whose constant first argument is a text to translate
MARKERS = frozenset({"N_", "gettext", "_"})


def template_texts() -> set[str]:
    env = jinja2.Environment(extensions=["jinja2.ext.i18n"])
    found: set[str] = set()
    for path in sorted((PACKAGE / "templates").rglob("*.html")):
        tree = env.parse(path.read_text(encoding="utf-8"))
        for _line, _func, message in extract_from_ast(tree, gettext_functions=("_",)):
            if isinstance(message, str):
                found.add(message)
    return found


def python_texts() -> set[str]:
    found: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            first = node.args[0]
            if name in MARKERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
    return found


def all_texts() -> set[str]:
    return template_texts() | python_texts()


def test_every_text_of_the_pages_has_a_translation_in_every_language() -> None:
    texts = all_texts()
    assert len(texts) > 150, "the extraction found too little: is it still looking?"
    for language in LANGUAGES:
        if language == "en":
            continue
        missing = sorted(texts - set(catalogue(language)))
        assert not missing, f"{language}.po lacks {len(missing)} texts: {missing}"


def test_the_catalogue_holds_no_text_the_pages_no_longer_show() -> None:
    stale = sorted(set(catalogue("ro")) - all_texts())
    assert not stale, f"ro.po has texts no page uses: {stale}"


def test_translations_keep_the_placeholders_of_the_english_text() -> None:
    for english, romanian in catalogue("ro").items():
        for mark in ("%(", "{"):
            assert english.count(mark) == romanian.count(mark), (english, romanian)


def test_the_catalogue_is_shipped_inside_the_package() -> None:
    assert (resources.files("backoffice") / "translations" / "ro.po").is_file()
