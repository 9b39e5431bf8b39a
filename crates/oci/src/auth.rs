use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Registry credentials, supplied by the caller (the gateway reads them from its vault). A bearer
/// token is never configured here: the client negotiates one from the registry's
/// `WWW-Authenticate` challenge using these credentials.
#[derive(Clone, Default)]
pub enum RegistryAuth {
    #[default]
    Anonymous,
    Basic {
        user: String,
        password: SecretString,
    },
}

impl RegistryAuth {
    pub fn basic(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self::Basic {
            user: user.into(),
            password: SecretString::from(password.into()),
        }
    }

    pub(crate) fn to_client(&self) -> oci_client::secrets::RegistryAuth {
        match self {
            Self::Anonymous => oci_client::secrets::RegistryAuth::Anonymous,
            Self::Basic { user, password } => oci_client::secrets::RegistryAuth::Basic(
                user.clone(),
                password.expose_secret().to_string(),
            ),
        }
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}
