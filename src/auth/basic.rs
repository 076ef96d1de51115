//! HTTP Basic auth: `Authorization: Basic base64(user:password)`.

use super::AuthError;
use crate::headers::Headers;
use crate::secret::Secret;
use base64::Engine as _;

pub fn verify(user: &Secret, password: &Secret, headers: &dyn Headers) -> Result<(), AuthError> {
    let value = headers
        .get("authorization")
        .map(str::trim)
        .ok_or(AuthError::MissingCredentials)?;
    let (scheme, encoded) = value.split_once(' ').ok_or(AuthError::MissingCredentials)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::MissingCredentials);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| AuthError::CredentialsMismatch)?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(AuthError::CredentialsMismatch)?;
    let (sent_user, sent_password) = (&decoded[..colon], &decoded[colon + 1..]);
    // Both compared, whatever the first answer, so timing tells neither.
    if user.matches(sent_user) & password.matches(sent_password) {
        Ok(())
    } else {
        Err(AuthError::CredentialsMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::HeaderPairs;

    fn with(value: &str) -> HeaderPairs {
        let mut h = HeaderPairs::new();
        h.add("Authorization", value);
        h
    }

    #[test]
    fn basic_credentials() {
        let (u, p) = (Secret::new("deploy"), Secret::new("pa:ss"));
        // "deploy:pa:ss": the password may hold a colon; the user name may not.
        assert_eq!(verify(&u, &p, &with("Basic ZGVwbG95OnBhOnNz")), Ok(()));
        assert_eq!(verify(&u, &p, &with("basic ZGVwbG95OnBhOnNz")), Ok(()));
        assert_eq!(
            verify(&u, &p, &with("Basic ZGVwbG95OnBhc3M=")),
            Err(AuthError::CredentialsMismatch)
        );
        assert_eq!(verify(&u, &p, &with("Basic !!!")), Err(AuthError::CredentialsMismatch));
        assert_eq!(verify(&u, &p, &with("Bearer x")), Err(AuthError::MissingCredentials));
        assert_eq!(verify(&u, &p, &HeaderPairs::new()), Err(AuthError::MissingCredentials));
    }
}
