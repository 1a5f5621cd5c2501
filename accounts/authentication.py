"""`Authorization: Bearer <token>` authentication for the REST API."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from accounts.services import token_authenticate
from accounts.throttling import (
    failed_authentication_count,
    failed_authentications_wait,
)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Resolve a bearer token to its tenant: `request.user` is the Tenant."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(
            "latin-1", errors="replace"
        )
        if not header:
            return None
        # Tokens cannot be tried at full speed: an address over its failed
        # attempts waits, whatever it sends.
        wait = failed_authentications_wait(request)
        if wait is not None:
            raise exceptions.Throttled(
                wait, detail="Too many failed authentications from this address."
            )
        try:
            return self._authenticate(header)
        except exceptions.AuthenticationFailed:
            failed_authentication_count(request)
            raise

    def _authenticate(self, header: str):
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != self.keyword.lower() or not secret or " " in secret:
            raise exceptions.AuthenticationFailed(
                "Send the token as 'Authorization: Bearer <token>'.",
                code="invalid_authorization_header",
            )
        token = token_authenticate(secret=secret)
        if token is None:
            raise exceptions.AuthenticationFailed(
                "The API token is not valid.", code="invalid_token"
            )
        if token.is_revoked:
            raise exceptions.AuthenticationFailed(
                "The API token has been revoked.", code="token_revoked"
            )
        if not token.tenant.is_active:
            raise exceptions.AuthenticationFailed(
                "The tenant of this token is deactivated.", code="tenant_inactive"
            )
        return token.tenant, token

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="ltm"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A tenant API token, issued by `manage.py issue_token`.",
        }
