"""Templates, CSS and bundled page scripts, installed as the package `secretlink.webui`."""
