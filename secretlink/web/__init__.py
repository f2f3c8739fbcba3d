"""The web service: the app factory, the JSON API (one blueprint per resource), the
HTML pages, and what guards them (origins, limits, proof of work, security headers)."""
