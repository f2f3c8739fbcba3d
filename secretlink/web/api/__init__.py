"""The JSON API, /api/v1: one blueprint per resource. docs/API.md documents every
endpoint and error; secretlink/openapi.json describes them (tests/test_openapi.py ties
the two to these routes)."""

from secretlink.web.api import (
    attachments,
    auth,
    inboxes,
    messages,
    notifications,
    openapi,
    settings,
)

BLUEPRINTS = (
    auth.bp,
    inboxes.bp,
    messages.bp,
    attachments.bp,
    openapi.bp,
    settings.bp,
    notifications.bp,
)
