"""Code the tests share: imported by test files and by ``.ci/run``, never collected as tests.

pytest puts ``parity_tests/`` on ``sys.path`` (the default ``prepend`` import mode:
the folder has no ``__init__.py``), so a test imports these as ``helpers.<module>``.
"""
