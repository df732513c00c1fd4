import pytest
import torch
import torch.nn.functional as F

from robustfront.models import create_model


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` are skipped on machines without a CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _threads():
    # 2-core CI machines: one intra-op thread avoids oversubscription with the loader
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def digits_test():
    """The 360 digits test images of robustfront's fixed split, as floats in [0,1], and their labels."""
    from robustfront.data import load_dataset
    ds = load_dataset("digits")
    return torch.as_tensor(ds.x_test).float().div(255), torch.as_tensor(ds.y_test)


@pytest.fixture(scope="session")
def digits_model():
    """(small CNN trained about a second on 8x8 digits, in eval mode; x_test, y_test: 256 held-out images)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, in_channels=1, input_size=8, width=16)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(6):
        perm = torch.randperm(1500)
        for i in range(0, 1500, 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval().zero_grad(set_to_none=True)
    return model, x[1500:1756], y[1500:1756]


# -- a loaded machine must not make the suite look hung (issue 21) ---------------------------------
# Every HEARTBEAT_S seconds a running test prints "[still running] TEST (N s)" to the terminal, and the
# summary lists the tests that took longer than BUDGET_S (the README's stated budget per test).
import os
import sys
import threading
import time

HEARTBEAT_S = float(os.environ.get("ROBUSTFRONT_TEST_HEARTBEAT_S", "60"))
BUDGET_S = float(os.environ.get("ROBUSTFRONT_TEST_BUDGET_S", "300"))
_over_budget: list = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    t0, stop = time.monotonic(), threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_S):
            sys.__stderr__.write(f"\n[still running] {item.nodeid} ({time.monotonic() - t0:.0f} s)\n")
            sys.__stderr__.flush()
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        took = time.monotonic() - t0
        if took > BUDGET_S:
            _over_budget.append((item.nodeid, took))


def pytest_terminal_summary(terminalreporter):
    if _over_budget:
        terminalreporter.write_line(f"tests over the {BUDGET_S:.0f} s budget per test (ROBUSTFRONT_TEST_BUDGET_S; "
                                    f"a loaded machine stretches them): " + ", ".join(
                                        f"{n} {t:.0f} s" for n, t in sorted(_over_budget, key=lambda p: -p[1])))
