//! Serve, refresh, or send the user back to sign in? The decision of `docs/CONTRACT.md`.

/// What to do with a stored token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve the stored access token.
    Serve,
    /// Refresh with the stored refresh token.
    Refresh,
    /// Expired and nothing to refresh with.
    Reauth,
}

/// `remaining = expiry - now`:
/// - `remaining > min_validity_s`: serve;
/// - otherwise, with a refresh token: refresh;
/// - otherwise, `remaining > 0`: serve (still valid, cannot refresh early);
/// - otherwise: reauth.
///
/// Unknown expiry: refresh when a refresh token exists, otherwise serve (without
/// `expires_in`).
pub fn decide(expiry: Option<i64>, has_refresh_token: bool, now: i64, min_validity_s: i64) -> Decision {
    let Some(expiry) = expiry else {
        return if has_refresh_token { Decision::Refresh } else { Decision::Serve };
    };
    let remaining = expiry.saturating_sub(now);
    if remaining > min_validity_s {
        Decision::Serve
    } else if has_refresh_token {
        Decision::Refresh
    } else if remaining > 0 {
        Decision::Serve
    } else {
        Decision::Reauth
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;

    const NOW: i64 = 1_764_100_000;

    #[test]
    fn more_than_min_validity_left_serves_even_with_refresh_token() {
        assert_eq!(decide(Some(NOW + 61), true, NOW, 60), Serve);
    }

    #[test]
    fn exactly_min_validity_left_refreshes_when_refresh_token_present() {
        assert_eq!(decide(Some(NOW + 60), true, NOW, 60), Refresh);
    }

    #[test]
    fn exactly_min_validity_left_serves_without_refresh_token() {
        assert_eq!(decide(Some(NOW + 60), false, NOW, 60), Serve);
    }

    #[test]
    fn one_second_left_without_refresh_token_serves() {
        assert_eq!(decide(Some(NOW + 1), false, NOW, 60), Serve);
    }

    #[test]
    fn expiring_now_without_refresh_token_is_reauth() {
        assert_eq!(decide(Some(NOW), false, NOW, 60), Reauth);
    }

    #[test]
    fn expired_with_refresh_token_refreshes() {
        assert_eq!(decide(Some(NOW - 3600), true, NOW, 60), Refresh);
    }

    #[test]
    fn expired_without_refresh_token_is_reauth() {
        assert_eq!(decide(Some(NOW - 1), false, NOW, 0), Reauth);
    }

    #[test]
    fn min_validity_zero_serves_until_the_last_second() {
        assert_eq!(decide(Some(NOW + 1), true, NOW, 0), Serve);
        assert_eq!(decide(Some(NOW), true, NOW, 0), Refresh);
    }

    #[test]
    fn unknown_expiry_refreshes_with_refresh_token_and_serves_without() {
        assert_eq!(decide(None, true, NOW, 60), Refresh);
        assert_eq!(decide(None, false, NOW, 60), Serve);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        assert_eq!(decide(Some(i64::MIN), false, i64::MAX, 60), Reauth);
        assert_eq!(decide(Some(i64::MAX), false, i64::MIN, 60), Serve);
    }
}
