import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _threads():
    # 2-core CI machines: one intra-op thread avoids oversubscription with the loader
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
