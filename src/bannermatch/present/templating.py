"""The Jinja2 environment of the package's HTML templates (``bannermatch/present/templates``):
the report's pages and the original API's result pages. Autoescaping is on."""

from __future__ import annotations

import functools

import jinja2


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("bannermatch.present", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def render(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)
