"""`pytest_test`: one Bazel py_test per pytest file, run through pytest itself."""

def pytest_test(name, src, deps = [], data = [], size = "medium", **kwargs):
    native.py_test(
        name = name,
        srcs = [src, "//tests:pytest_main.py", "//tests:conftest.py"],
        main = "//tests:pytest_main.py",
        args = ["$(location %s)" % src],
        deps = deps,
        data = data + ["//:pytest.ini"],
        python_version = "PY3",
        size = size,
        **kwargs
    )
