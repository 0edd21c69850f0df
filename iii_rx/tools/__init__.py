"""The client commands of ``iii-rx``: ``top`` (a textual dashboard), ``ls``, ``call``, ``watch``.

They are clients of an engine at a URL, never an engine themselves. ``args`` holds the
command lines (argparse only), ``common`` the connection and error handling, ``rows`` and
``metrics`` the tables (pure), ``commands`` the one-shot commands, ``top`` and ``source`` the
dashboard. See ``docs/cli.md``.
"""
