"""Repository-root conftest: enables ``pytester`` for the plugin's end-to-end tests.

The shortcutgates plugin itself is loaded through its ``pytest11`` entry point (the package is
installed), not from here.
"""

pytest_plugins = ["pytester"]
