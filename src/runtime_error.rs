//! The robot runtime's error codes (the `code` of a guard envelope or a failed action).

use crate::open_enum::open_enum;

open_enum! {
    /// A runtime error code, as the robot runtime sends it (`NOT_READY`, `CANCELLED`, …), or
    /// as the SDK reports a runtime-plane failure of its own (`RUNTIME_NOT_FOUND`).
    ///
    /// Open: a code this SDK does not know is kept verbatim in [`RuntimeErrorCode::Other`].
    /// Compare with the variants, never with strings.
    pub enum RuntimeErrorCode {
        /// `NOT_READY`: the runtime is still loading.
        NotReady = "NOT_READY",
        /// `METHOD_NOT_FOUND`: the runtime does not know the method.
        MethodNotFound = "METHOD_NOT_FOUND",
        /// `RUNTIME_FAILED`: the runtime failed without a code of its own.
        RuntimeFailed = "RUNTIME_FAILED",
        /// `CAPTURE_FAILED`: a camera capture failed without a code of its own.
        CaptureFailed = "CAPTURE_FAILED",
        /// `UNKNOWN_CAMERA`: no camera by that name.
        UnknownCamera = "UNKNOWN_CAMERA",
        /// `NAVIGATION_STUCK`: the robot could not reach its goal.
        NavigationStuck = "NAVIGATION_STUCK",
        /// `CANCELLED`: the action was cancelled.
        Cancelled = "CANCELLED",
        /// `RUNTIME_NOT_FOUND`: the SDK found no runtime worker in the room (CONTRACT §7).
        RuntimeNotFound = "RUNTIME_NOT_FOUND",
    }
}

#[cfg(test)]
mod tests {
    use super::RuntimeErrorCode;

    #[test]
    fn known_and_unknown_codes_round_trip() {
        assert_eq!(
            RuntimeErrorCode::from_wire("NOT_READY"),
            RuntimeErrorCode::NotReady
        );
        assert_eq!(RuntimeErrorCode::Cancelled.as_str(), "CANCELLED");
        let other = RuntimeErrorCode::from_wire("BATTERY_LOW");
        assert_eq!(other, RuntimeErrorCode::Other("BATTERY_LOW".into()));
        assert_eq!(other.to_string(), "BATTERY_LOW");
        let json = serde_json::to_string(&RuntimeErrorCode::UnknownCamera).unwrap();
        assert_eq!(json, "\"UNKNOWN_CAMERA\"");
    }
}
