//! Which KurrentDB failures are worth retrying.
//!
//! The crate folds several gRPC statuses into one variant, so the classification reads the
//! status code where the crate keeps it. What the server sends, from KurrentDB v26.1.0
//! (`Services/Transport/Grpc/RpcExceptions.cs`): a node that is starting, electing a leader or
//! shutting down answers `Unavailable` "Server Is Not Ready" (or "Server Is Too Busy"); a
//! follower asked for a leader-only operation answers `NotFound` with a `not-leader` exception
//! header (the crate's `NotLeaderException`) or, without leader info, `Unknown` "No leader info
//! available"; a commit that did not complete in time answers `Aborted` "Operation timed out".
//! The crate turns `Unavailable`, `Internal`, `DataLoss` and `Unknown` into `ServerError` with
//! the status printed (`status: Unavailable, message: ...`), and other codes into `Grpc`.

use tonic::Code;

use crate::StoreError;

/// Maps a crate error to the port's: transient server states are `Unavailable` (the caller
/// may retry; appends are idempotent), a refused oversized append is `InvalidInput`, and the
/// rest is `Backend`.
pub(super) fn map_error(e: kurrentdb::Error) -> StoreError {
    use kurrentdb::Error as K;
    let text = e.to_string();
    match e {
        K::ConnectionClosed
        | K::GrpcConnectionError(_)
        | K::DeadlineExceeded
        | K::NotLeaderException(_) => StoreError::Unavailable(text),
        K::ServerError(ref status) if transient_server_error(status) => {
            StoreError::Unavailable(text)
        }
        K::Grpc { code, ref message } => match code {
            Code::Unavailable
            | Code::Aborted
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Cancelled => StoreError::Unavailable(text),
            Code::InvalidArgument if message.contains("Maximum Append Size") => {
                StoreError::InvalidInput(format!(
                    "the append is larger than the KurrentDB server accepts in one write: {message}"
                ))
            }
            _ => StoreError::Backend(text),
        },
        _ => StoreError::Backend(text),
    }
}

/// A `ServerError` is transient when its status is `Unavailable` (not ready, too busy, or the
/// transport could not reach the node) or the node knows of no leader yet.
fn transient_server_error(status: &str) -> bool {
    status.starts_with("status: Unavailable")
        || status.contains("Server Is Not Ready")
        || status.contains("Server Is Too Busy")
        || status.contains("No leader info available")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kurrentdb::Error as K;

    fn grpc(code: Code, message: &str) -> K {
        K::Grpc {
            code,
            message: message.into(),
        }
    }

    #[test]
    fn transient_server_states_are_unavailable() {
        let transient = [
            K::ConnectionClosed,
            K::DeadlineExceeded,
            K::NotLeaderException(kurrentdb::Endpoint {
                host: "kurrentdb-2".into(),
                port: 2113,
            }),
            // What the crate makes of tonic's Display for these statuses.
            K::ServerError(
                "status: Unavailable, message: \"Server Is Not Ready\", details: [], metadata: MetadataMap { headers: {} }".into(),
            ),
            K::ServerError("status: Unavailable, message: \"Server Is Too Busy\", details: []".into()),
            K::ServerError(
                "status: Unavailable, message: \"error trying to connect: tcp connect error\"".into(),
            ),
            K::ServerError("status: Unknown, message: \"No leader info available in response\"".into()),
            grpc(Code::Aborted, "Operation timed out: commit"),
            grpc(Code::Unavailable, "x"),
        ];
        for e in transient {
            let shown = format!("{e:?}");
            assert!(
                matches!(map_error(e), StoreError::Unavailable(_)),
                "{shown} should be Unavailable"
            );
        }
    }

    #[test]
    fn faults_stay_backend_errors_and_oversized_appends_are_bad_input() {
        for e in [
            K::ServerError("status: Internal, message: \"boom\"".into()),
            K::AccessDenied,
            K::ResourceDeleted,
            grpc(Code::FailedPrecondition, "x"),
        ] {
            let shown = format!("{e:?}");
            assert!(
                matches!(map_error(e), StoreError::Backend(_)),
                "{shown} should be a backend error"
            );
        }
        assert!(matches!(
            map_error(grpc(
                Code::InvalidArgument,
                "Maximum Append Size of 1048576 Exceeded."
            )),
            StoreError::InvalidInput(_)
        ));
    }
}
