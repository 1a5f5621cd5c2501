import pytest

from accounts.services import token_issue


@pytest.fixture
def token(tenant_a) -> str:
    return token_issue(tenant=tenant_a).secret


@pytest.fixture
def other_token(tenant_b) -> str:
    return token_issue(tenant=tenant_b).secret
