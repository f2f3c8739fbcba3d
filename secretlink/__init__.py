"""secretlink: end-to-end encrypted anonymous message links.

The package root stays light so that `secretlink.crypto` can be used without
importing Flask; the factory lives in secretlink.web.app.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from secretlink.settings import Settings


def create_app(settings: "Settings | None" = None) -> "Flask":
    """Build the WSGI app (also what `flask --app secretlink run` calls)."""
    from secretlink.web.app import create_app as factory

    return factory(settings)
