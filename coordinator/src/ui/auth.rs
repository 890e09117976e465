//! Who may see the web UI: the decision, as pure functions of the request's headers.
//!
//! With a cluster token, a browser logs in once with it (the form at `/ui/login`) and gets
//! an `HttpOnly`, `SameSite=Strict` session cookie holding a value derived from the token
//! (HMAC-SHA256 of a fixed label): the token itself never sits in the browser, and every
//! session ends when the token is changed. Scripts send `Authorization: Bearer TOKEN`
//! instead. Without a cluster token the UI is open, but only on a loopback HTTP address (as
//! gRPC without a token is refused anywhere else): job data is never served to the network
//! without a token.
//!
//! Every action (cancel a job, drain a worker) is a POST carrying a CSRF value derived the
//! same way (a per-process random key when there is no token), checked besides the cookie.

use ring::hmac;
use sluice_proto::transport::same_secret;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sluice_session";

/// What a request may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything.
    Granted,
    /// Nothing but the login page.
    Login,
    /// Nothing: no token is set and the UI is not on loopback.
    Closed,
}

/// The UI's keys.
pub struct UiAuth {
    token: Option<Vec<u8>>,
    key: hmac::Key,
    open: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl UiAuth {
    /// The UI of a cluster with `token` (or none), served on a loopback address or not.
    /// `random` keys the CSRF value when there is no token.
    pub fn new(token: Option<&[u8]>, loopback: bool, random: &[u8]) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, token.unwrap_or(random));
        UiAuth {
            token: token.map(<[u8]>::to_vec),
            key,
            open: token.is_none() && loopback,
        }
    }

    fn derived(&self, label: &str) -> String {
        hex(hmac::sign(&self.key, label.as_bytes()).as_ref())
    }

    /// The session cookie's value after a login.
    pub fn session(&self) -> String {
        self.derived("sluice-ui-session")
    }

    /// The CSRF value every action must carry.
    pub fn csrf(&self) -> String {
        self.derived("sluice-ui-csrf")
    }

    /// Whether a login form's token is the cluster's.
    pub fn login_ok(&self, offered: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| same_secret(t, offered.trim().as_bytes()))
    }

    /// Whether a login is needed at all.
    pub fn needs_login(&self) -> bool {
        self.token.is_some()
    }

    /// What a request with these `cookie` and `authorization` headers may see.
    pub fn decide(&self, cookie: Option<&str>, authorization: Option<&str>) -> Access {
        let Some(token) = self.token.as_deref() else {
            return if self.open {
                Access::Granted
            } else {
                Access::Closed
            };
        };
        let bearer = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| same_secret(token, t.trim().as_bytes()));
        let session = cookie
            .and_then(|c| cookie_value(c, SESSION_COOKIE))
            .is_some_and(|v| same_secret(self.session().as_bytes(), v.as_bytes()));
        if bearer || session {
            Access::Granted
        } else {
            Access::Login
        }
    }

    /// Whether an action's CSRF value is right.
    pub fn csrf_ok(&self, offered: &str) -> bool {
        same_secret(self.csrf().as_bytes(), offered.as_bytes())
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_the_cookie_or_the_bearer_token_and_nothing_else() {
        let ui = UiAuth::new(Some(b"s3cret"), false, b"r");
        let cookie = format!("a=1; {SESSION_COOKIE}={}", ui.session());
        assert_eq!(ui.decide(Some(&cookie), None), Access::Granted);
        assert_eq!(ui.decide(None, Some("Bearer s3cret")), Access::Granted);
        assert_eq!(ui.decide(None, None), Access::Login);
        assert_eq!(ui.decide(None, Some("Bearer s3cre")), Access::Login);
        assert_eq!(
            ui.decide(Some("sluice_session=s3cret"), None),
            Access::Login
        );
        let other = UiAuth::new(Some(b"other"), false, b"r");
        let stale = format!("{SESSION_COOKIE}={}", other.session());
        assert_eq!(
            ui.decide(Some(&stale), None),
            Access::Login,
            "another token's session"
        );
        assert!(ui.login_ok("s3cret\n") && !ui.login_ok("nope") && !ui.login_ok(""));
        assert!(ui.csrf_ok(&ui.csrf()) && !ui.csrf_ok(&other.csrf()) && !ui.csrf_ok(""));
        assert_ne!(ui.csrf(), ui.session());
    }

    #[test]
    fn without_a_token_the_ui_is_open_on_loopback_only() {
        assert_eq!(
            UiAuth::new(None, true, b"r").decide(None, None),
            Access::Granted
        );
        assert_eq!(
            UiAuth::new(None, false, b"r").decide(None, None),
            Access::Closed
        );
        assert!(!UiAuth::new(None, true, b"r").login_ok(""));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        assert_eq!(
            cookie_value("x_sluice_session=1; sluice_session=2", SESSION_COOKIE),
            Some("2")
        );
        assert_eq!(cookie_value("other=1", SESSION_COOKIE), None);
    }
}
