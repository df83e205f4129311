//! Building and checking the credential of a connection string (auth spec rules).

use bson::{Bson, Document};

use super::UserInfo;
use crate::options::{AuthMechanism, Credential};

/// The `$external` virtual database.
const EXTERNAL: &str = "$external";

/// Mechanism property names this driver knows, in their canonical spelling.
const KNOWN_PROPERTIES: &[&str] = &[
    "SERVICE_NAME",
    "CANONICALIZE_HOST_NAME",
    "SERVICE_REALM",
    "SERVICE_HOST",
    "AWS_SESSION_TOKEN",
    "ENVIRONMENT",
    "TOKEN_RESOURCE",
    "ALLOWED_HOSTS",
];

/// Property names are case-insensitive: known ones are stored in their canonical spelling.
pub(crate) fn canonical_property_name(name: &str) -> String {
    KNOWN_PROPERTIES
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_string(), |k| (*k).to_string())
}

/// What the connection string said about authentication.
pub(crate) struct AuthInput<'a> {
    pub userinfo: Option<UserInfo>,
    pub mechanism: Option<AuthMechanism>,
    pub source: Option<String>,
    pub properties: Option<Document>,
    pub database: Option<&'a str>,
    pub warnings: &'a mut Vec<String>,
}

/// The credential, with defaults filled in, or `None` when the URI does not ask for
/// authentication (no user information and no `authMechanism`).
pub(crate) fn build(input: AuthInput<'_>) -> Result<Option<Credential>, String> {
    let AuthInput {
        userinfo,
        mechanism,
        source,
        properties,
        database,
        warnings,
    } = input;
    if userinfo.is_none() && mechanism.is_none() {
        if properties.is_some() {
            warnings.push(
                "ignoring option 'authMechanismProperties': no credentials are configured"
                    .to_string(),
            );
        }
        return Ok(None);
    }
    let (username, password) = match userinfo {
        Some(u) => (Some(u.username), u.password),
        None => (None, None),
    };
    let name = mechanism.map_or("the default mechanism", |m| m.as_str());
    let properties = properties.filter(|p| !p.is_empty());
    let has_user = username.as_deref().is_some_and(|u| !u.is_empty());

    let require_user = || {
        if has_user {
            Ok(())
        } else {
            Err(format!("a user name is required for {name}"))
        }
    };
    let require_password = || {
        if password.is_some() {
            Ok(())
        } else {
            Err(format!("a password is required for {name}"))
        }
    };
    let forbid_password = || {
        if password.is_some() {
            Err(format!("a password must not be given for {name}"))
        } else {
            Ok(())
        }
    };
    let forbid_properties = || {
        if properties.is_some() {
            Err(format!(
                "authMechanismProperties are not supported by {name}"
            ))
        } else {
            Ok(())
        }
    };
    let external_source = || match source.as_deref() {
        None | Some(EXTERNAL) => Ok(EXTERNAL.to_string()),
        Some(_) => Err(format!("authSource must be '$external' for {name}")),
    };

    let mut credential = Credential {
        username: username.clone(),
        password: password.clone(),
        source: None,
        mechanism,
        mechanism_properties: None,
    };
    match mechanism {
        None | Some(AuthMechanism::ScramSha1) | Some(AuthMechanism::ScramSha256) => {
            require_user()?;
            if mechanism.is_some() {
                require_password()?;
            }
            forbid_properties()?;
            credential.source = Some(default_source(source, database, "admin"));
        }
        Some(AuthMechanism::Plain) => {
            require_user()?;
            require_password()?;
            forbid_properties()?;
            credential.source = Some(default_source(source, database, EXTERNAL));
        }
        Some(AuthMechanism::Gssapi) => {
            require_user()?;
            credential.source = Some(external_source()?);
            let mut props = properties.clone().unwrap_or_default();
            for (k, v) in &props {
                match k.as_str() {
                    "SERVICE_NAME" | "SERVICE_REALM" | "SERVICE_HOST" => {}
                    "CANONICALIZE_HOST_NAME" => {
                        let ok = matches!(v, Bson::String(s) if
                            ["none", "forward", "forwardAndReverse", "true", "false"]
                                .contains(&s.as_str()));
                        if !ok {
                            return Err("CANONICALIZE_HOST_NAME must be 'none', 'forward', \
                                        'forwardAndReverse', 'true' or 'false'"
                                .into());
                        }
                    }
                    other => {
                        return Err(format!(
                            "mechanism property '{other}' is not supported by GSSAPI"
                        ))
                    }
                }
            }
            if !props.contains_key("SERVICE_NAME") {
                props.insert("SERVICE_NAME", "mongodb");
            }
            credential.mechanism_properties = Some(props);
        }
        Some(AuthMechanism::MongoDbX509) => {
            forbid_password()?;
            forbid_properties()?;
            credential.source = Some(external_source()?);
            if !has_user {
                credential.username = None;
            }
        }
        Some(AuthMechanism::MongoDbAws) => {
            if username.is_some() || password.is_some() {
                return Err(
                    "MONGODB-AWS credentials must come from the environment, not the \
                            connection string"
                        .into(),
                );
            }
            if properties
                .as_ref()
                .is_some_and(|p| p.contains_key("AWS_SESSION_TOKEN"))
            {
                return Err("AWS_SESSION_TOKEN must come from the environment, not the \
                            connection string"
                    .into());
            }
            forbid_properties()?;
            credential.source = Some(external_source()?);
        }
        Some(AuthMechanism::MongoDbOidc) => {
            forbid_password()?;
            credential.source = Some(external_source()?);
            let props = properties.clone().unwrap_or_default();
            for k in props.keys() {
                if k != "ENVIRONMENT" && k != "TOKEN_RESOURCE" {
                    return Err(format!(
                        "mechanism property '{k}' is not supported for MONGODB-OIDC in a \
                         connection string"
                    ));
                }
            }
            let environment = match props.get("ENVIRONMENT") {
                Some(Bson::String(e)) => e.as_str(),
                _ => {
                    return Err(
                        "MONGODB-OIDC in a connection string requires the ENVIRONMENT \
                                mechanism property (callbacks are configured in code)"
                            .into(),
                    )
                }
            };
            let needs_resource = match environment {
                "azure" | "gcp" => true,
                "test" | "k8s" => false,
                other => {
                    return Err(format!(
                        "MONGODB-OIDC ENVIRONMENT '{other}' is not supported (expected test, \
                         azure, gcp or k8s)"
                    ))
                }
            };
            if needs_resource != props.contains_key("TOKEN_RESOURCE") {
                return Err(if needs_resource {
                    format!("MONGODB-OIDC ENVIRONMENT '{environment}' requires TOKEN_RESOURCE")
                } else {
                    format!(
                        "MONGODB-OIDC ENVIRONMENT '{environment}' does not accept TOKEN_RESOURCE"
                    )
                });
            }
            if username.is_some() && environment != "azure" {
                return Err(format!(
                    "MONGODB-OIDC ENVIRONMENT '{environment}' does not accept a user name"
                ));
            }
            credential.mechanism_properties = Some(props);
        }
        Some(AuthMechanism::MongoDbCr) => {
            return Err("MONGODB-CR was removed from MongoDB; use SCRAM-SHA-256".into())
        }
    }
    Ok(Some(credential))
}

/// Sets the source of an already built credential (an `authSource` from a TXT record).
pub(crate) fn apply_source(c: &mut Credential, source: &str) -> Result<(), String> {
    match c.mechanism {
        None
        | Some(AuthMechanism::ScramSha1)
        | Some(AuthMechanism::ScramSha256)
        | Some(AuthMechanism::Plain) => {
            c.source = Some(source.to_string());
            Ok(())
        }
        Some(_) if source == EXTERNAL => Ok(()),
        Some(m) => Err(format!("authSource must be '$external' for {}", m.as_str())),
    }
}

fn default_source(source: Option<String>, database: Option<&str>, fallback: &str) -> String {
    source
        .or_else(|| database.map(str::to_string))
        .unwrap_or_else(|| fallback.to_string())
}
