//! Who may use a pre-authenticated app: an app's `access` rules applied to
//! a signed-in user's identity.
//!
//! Each rule kind that is set must hold (users, email domains, groups,
//! claims, MFA); within a list, one match is enough. No rules: anyone
//! signed in. `access.source_cidrs` is checked apart, for every app,
//! before any sign-in.

use serde_json::{Map, Value};

use crate::config::{Access, Sso};

/// A signed-in user, as the rules and the backend's identity headers see
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// Authentication methods (`amr`), for `require_mfa`.
    pub methods: Vec<String>,
    /// The other claims the rules name, as strings.
    pub claims: Vec<(String, Vec<String>)>,
}

impl Identity {
    /// From verified token claims, with the app's claim names.
    pub fn from_claims(claims: &Map<String, Value>, sso: &Sso, access: &Access) -> Identity {
        let name = |n: &str, default: &'static str| {
            if n.is_empty() {
                default.to_string()
            } else {
                n.to_string()
            }
        };
        let user_claim = name(&sso.user_claim, "sub");
        let email_claim = name(&sso.email_claim, "email");
        let groups_claim = name(&sso.groups_claim, "groups");
        Identity {
            // A provider without the configured claim (not every one has
            // `preferred_username`) still names the user by subject.
            user: strings(claims.get(&user_claim))
                .into_iter()
                .next()
                .or_else(|| strings(claims.get("sub")).into_iter().next())
                .unwrap_or_default(),
            email: strings(claims.get(&email_claim)).into_iter().next(),
            groups: strings(claims.get(&groups_claim)),
            methods: strings(claims.get("amr")),
            claims: access
                .claims
                .keys()
                .map(|k| (k.clone(), strings(claims.get(k))))
                .collect(),
        }
    }
}

/// A claim as strings: a string, the strings of an array, a number or a
/// boolean as written.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().flat_map(|x| strings(Some(x))).collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(Value::Bool(b)) => vec![b.to_string()],
        _ => Vec::new(),
    }
}

/// Authentication methods that count as multi-factor (RFC 8176).
const MFA_METHODS: [&str; 6] = ["mfa", "otp", "hwk", "swk", "sms", "fido"];

/// Whether `who` may use the app; the reason when not (for the 403 page
/// and the log).
pub fn allows(access: &Access, who: &Identity) -> Result<(), String> {
    let email = who.email.as_deref().map(str::to_ascii_lowercase);
    if !access.users.is_empty() {
        let listed = access
            .users
            .iter()
            .any(|u| u == &who.user || email.as_deref().is_some_and(|e| u.eq_ignore_ascii_case(e)));
        if !listed {
            return Err("your account is not among this application's users".into());
        }
    }
    if !access.email_domains.is_empty() {
        let domain = email
            .as_deref()
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d);
        let ok = domain.is_some_and(|d| {
            access
                .email_domains
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(d))
        });
        if !ok {
            return Err("your email domain may not use this application".into());
        }
    }
    if !access.groups.is_empty() && !who.groups.iter().any(|g| access.groups.contains(g)) {
        return Err("you are in none of the groups this application admits".into());
    }
    for (name, want) in &access.claims {
        let has = who
            .claims
            .iter()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, vals)| vals.iter().any(|v| v == want));
        if !has {
            return Err(format!("your sign-in lacks the claim {name} = {want}"));
        }
    }
    if access.require_mfa
        && !who
            .methods
            .iter()
            .any(|m| MFA_METHODS.contains(&m.as_str()))
    {
        return Err("this application needs a multi-factor sign-in".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn who(v: Value) -> Identity {
        let access = Access {
            claims: [("department".to_string(), "sales".to_string())].into(),
            ..Access::default()
        };
        Identity::from_claims(v.as_object().unwrap(), &Sso::default(), &access)
    }

    fn alice() -> Identity {
        who(json!({
            "sub": "a1", "email": "Alice@Example.com", "groups": ["staff", "finance"],
            "amr": ["pwd", "mfa"], "department": "sales"
        }))
    }

    #[test]
    fn no_rules_admit_anyone_signed_in() {
        assert!(allows(&Access::default(), &alice()).is_ok());
        assert!(allows(&Access::default(), &who(json!({"sub": "x"}))).is_ok());
    }

    #[test]
    fn each_rule_kind_must_hold() {
        let a = alice();
        let rule = |f: &dyn Fn(&mut Access)| {
            let mut acc = Access::default();
            f(&mut acc);
            allows(&acc, &a)
        };
        assert!(rule(&|x| x.users = vec!["alice@example.com".into()]).is_ok());
        assert!(rule(&|x| x.users = vec!["a1".into()]).is_ok());
        assert!(rule(&|x| x.users = vec!["bob".into()]).is_err());
        assert!(rule(&|x| x.email_domains = vec!["EXAMPLE.com".into()]).is_ok());
        assert!(rule(&|x| x.email_domains = vec!["example.org".into()]).is_err());
        assert!(rule(&|x| x.groups = vec!["hr".into(), "finance".into()]).is_ok());
        assert!(rule(&|x| x.groups = vec!["hr".into()]).is_err());
        assert!(rule(&|x| x.require_mfa = true).is_ok());
        assert!(rule(&|x| {
            x.claims.insert("department".into(), "sales".into());
        })
        .is_ok());
        assert!(rule(&|x| {
            x.claims.insert("department".into(), "hr".into());
        })
        .is_err());
        // Rules combine: every kind set must hold.
        assert!(rule(&|x| {
            x.groups = vec!["staff".into()];
            x.email_domains = vec!["example.org".into()];
        })
        .is_err());
    }

    #[test]
    fn mfa_and_missing_claims_are_refused() {
        let acc = Access {
            require_mfa: true,
            ..Access::default()
        };
        assert!(allows(&acc, &who(json!({"sub": "b", "amr": ["pwd"]}))).is_err());
        assert!(allows(&acc, &who(json!({"sub": "b"}))).is_err());
        let acc = Access {
            email_domains: vec!["example.com".into()],
            ..Access::default()
        };
        assert!(allows(&acc, &who(json!({"sub": "b"}))).is_err());
    }

    #[test]
    fn claim_names_follow_the_sso_settings() {
        let sso = Sso {
            user_claim: "preferred_username".into(),
            groups_claim: "roles".into(),
            ..Sso::default()
        };
        let claims = json!({"sub": "x", "preferred_username": "alice", "roles": ["admin", 7]});
        let id = Identity::from_claims(claims.as_object().unwrap(), &sso, &Access::default());
        assert_eq!(id.user, "alice");
        assert_eq!(id.groups, ["admin", "7"]);
    }
}
