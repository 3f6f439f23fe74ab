"""Type stubs of the native extension (checked against the runtime by the tests)."""

from typing import Any, Callable, Optional, final


__version__: str

class O365Error(Exception):
    code: int
    code_name: str
    action: str
    service_code: Optional[str]
    request_id: Optional[str]
    retry_after: Optional[float]
    #: What the operation did before it stopped (a cancelled run's results, as the
    #: operation's result type when raised by a typed method), else None.
    partial: Any
    #: The id of the run that stopped, when the error carries one.
    run_id: Optional[str]

class O365InputError(O365Error): ...
class O365AuthError(O365Error): ...
class O365ObjectError(O365Error): ...
class O365ServiceError(O365Error): ...
class O365PolicyError(O365Error): ...
class O365StoreError(O365Error): ...
class O365EngineError(O365Error): ...
class O365DnsError(O365Error): ...
class O365OperationError(O365Error): ...

class InvalidInputError(O365InputError):
    CODE: int
class InvalidConfigError(O365InputError):
    CODE: int
class NullArgumentError(O365InputError):
    CODE: int
class InvalidUtf8Error(O365InputError):
    CODE: int
class MalformedJsonError(O365InputError):
    CODE: int
class UnknownFieldError(O365InputError):
    CODE: int
class UnknownOperationError(O365InputError):
    CODE: int
class InvalidHandleError(O365InputError):
    CODE: int
class InvalidUpnError(O365InputError):
    CODE: int
class InvalidMailNicknameError(O365InputError):
    CODE: int
class InvalidDomainNameError(O365InputError):
    CODE: int
class InvalidUsageLocationError(O365InputError):
    CODE: int
class AuthError(O365AuthError):
    CODE: int
class PermissionDeniedError(O365AuthError):
    CODE: int
class CertificateRequiredError(O365AuthError):
    CODE: int
class AdminRoleMissingError(O365AuthError):
    CODE: int
class NotFoundError(O365ObjectError):
    CODE: int
class AlreadyExistsError(O365ObjectError):
    CODE: int
class ConflictError(O365ObjectError):
    CODE: int
class ThrottledError(O365ServiceError):
    CODE: int
class ServiceUnavailableError(O365ServiceError):
    CODE: int
class TransportError(O365ServiceError):
    CODE: int
class RequestTimeoutError(O365ServiceError):
    CODE: int
class UnexpectedResponseError(O365ServiceError):
    CODE: int
class TlsError(O365ServiceError):
    CODE: int
class UntrustedResponseError(O365ServiceError):
    CODE: int
class PasswordPolicyError(O365PolicyError):
    CODE: int
class LicenceUnavailableError(O365PolicyError):
    CODE: int
class DomainNotVerifiedError(O365PolicyError):
    CODE: int
class PolicyViolationError(O365PolicyError):
    CODE: int
class StoreCorruptError(O365StoreError):
    CODE: int
class StoreVersionTooNewError(O365StoreError):
    CODE: int
class StoreLockedError(O365StoreError):
    CODE: int
class StoreIoError(O365StoreError):
    CODE: int
class SafetyThresholdError(O365EngineError):
    CODE: int
class IntegrationDisabledError(O365EngineError):
    CODE: int
class NotIntegratedError(O365EngineError):
    CODE: int
class PlanStaleError(O365EngineError):
    CODE: int
class ProtectedAccountError(O365EngineError):
    CODE: int
class PreconditionFailedError(O365EngineError):
    CODE: int
class WorkHeldError(O365EngineError):
    CODE: int
class OutOfScopeError(O365EngineError):
    CODE: int
class DnsRecordMismatchError(O365DnsError):
    CODE: int
class DnsUpdateRefusedError(O365DnsError):
    CODE: int
class OperationCancelledError(O365OperationError):
    CODE: int
class NotSupportedError(O365OperationError):
    CODE: int
class InternalError(O365OperationError):
    CODE: int
class RuntimeContextError(O365OperationError):
    CODE: int
class ForkedProcessError(O365OperationError):
    CODE: int

def validate_upn(upn: str) -> None: ...
def validate_domain_name(name: str) -> None: ...
def password_rules_broken(password: str, policy: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]: ...
def error_codes() -> list[tuple[int, str, str, str]]: ...
def operations_json() -> str: ...
def result_schemas_json() -> str: ...
def params_schemas_json() -> str: ...
def take_log_records() -> list[tuple[int, str, str]]: ...

#: Each error code's class, by number.
_CLASSES_BY_CODE: dict[int, type[O365Error]]

@final
class CancelHandle:
    def __new__(cls) -> CancelHandle: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

@final
class NativeSyncLoop:
    def stop(self) -> int: ...

@final
class NativeIntegration:
    def __new__(cls, config_json: str) -> NativeIntegration: ...
    def start_sync_loop(
        self, params_json: str, on_event: Optional[Callable[[str], Any]] = None
    ) -> NativeSyncLoop: ...
    def call(
        self,
        name: str,
        params_json: str,
        on_event: Optional[Callable[[str], Any]] = None,
        cancel: Optional[CancelHandle] = None,
        lease_wait_secs: Optional[float] = None,
        on_log: Optional[Callable[[int, str, str], Any]] = None,
    ) -> str: ...
