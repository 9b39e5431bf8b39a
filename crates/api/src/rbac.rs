//! Who may do what: one reviewed table, a reason per rule (as the seccomp table has). Every
//! route names an [`Access`] when it is registered (see `routes.rs`); a route cannot exist
//! without one. Impersonation, when it lands, evaluates this table for the *target's* role.

use gig_store::Role;

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No caller needed: the sign-in flow itself.
    Public,
    /// Any signed-in user (their own account and session).
    SignedIn,
    /// A signed-in user whose role has this permission.
    Requires(Permission),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// See installed and declared servers and their health.
    ViewServers,
    /// See every user and their role.
    ViewUsers,
    /// Change a user's role.
    ManageUsers,
    /// Read the audit log.
    ViewAudit,
    /// Make profiles of tools and tokens for them (one's own only).
    UseProfiles,
    /// Act as another user, with exactly their permissions.
    Impersonate,
    /// Install and uninstall servers.
    ManageServers,
    /// Set and delete servers' credentials.
    ManageCredentials,
    /// Approve a changed tool definition (and read servers' logs).
    ApproveTools,
}

/// One rule: the least role that holds `permission`, and why.
struct Rule {
    permission: Permission,
    least: Role,
    reason: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        permission: Permission::ViewServers,
        least: Role::Viewer,
        reason: "server names and health are what every user needs to pick tools; no secrets",
    },
    Rule {
        permission: Permission::ViewUsers,
        least: Role::Operator,
        reason: "operators answer 'who has access'; members see only themselves",
    },
    Rule {
        permission: Permission::ManageUsers,
        least: Role::Admin,
        reason: "a role change is a grant of authority: only admins grant",
    },
    Rule {
        permission: Permission::ViewAudit,
        least: Role::Operator,
        reason: "the log names every user's actions; operators investigate, members do not",
    },
    Rule {
        permission: Permission::UseProfiles,
        least: Role::Member,
        reason: "a profile token is a credential to call tools; viewers look, members use",
    },
    Rule {
        permission: Permission::Impersonate,
        least: Role::Admin,
        reason: "seeing the gateway as a user sees it is for support; it reveals their profiles",
    },
    Rule {
        permission: Permission::ManageServers,
        least: Role::Operator,
        reason: "an install runs new code on the host (sandboxed) for everyone; operators run the host",
    },
    Rule {
        permission: Permission::ManageCredentials,
        least: Role::Operator,
        reason: "a shared credential acts for the whole team upstream; operators hold those keys",
    },
    Rule {
        permission: Permission::ApproveTools,
        least: Role::Operator,
        reason: "an approval makes a changed tool visible to everyone; logs may show internals",
    },
];

/// Whether `role` holds `permission`.
pub fn allows(role: Role, permission: Permission) -> bool {
    RULES
        .iter()
        .find(|r| r.permission == permission)
        .is_some_and(|r| role >= r.least)
}

/// The table as (permission, least role, reason), for docs/authentication.md.
pub fn rules() -> impl Iterator<Item = (Permission, Role, &'static str)> {
    RULES.iter().map(|r| (r.permission, r.least, r.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permission_has_exactly_one_rule() {
        for p in [
            Permission::ViewServers,
            Permission::ViewUsers,
            Permission::ManageUsers,
            Permission::ViewAudit,
            Permission::UseProfiles,
            Permission::Impersonate,
            Permission::ManageServers,
            Permission::ManageCredentials,
            Permission::ApproveTools,
        ] {
            assert_eq!(
                RULES.iter().filter(|r| r.permission == p).count(),
                1,
                "{p:?}"
            );
        }
    }

    #[test]
    fn only_admins_grant_roles_and_viewers_only_view() {
        assert!(allows(Role::Admin, Permission::ManageUsers));
        for role in [Role::Operator, Role::Member, Role::Viewer] {
            assert!(!allows(role, Permission::ManageUsers), "{role:?}");
        }
        assert!(allows(Role::Viewer, Permission::ViewServers));
        assert!(!allows(Role::Viewer, Permission::ViewAudit));
        assert!(!allows(Role::Member, Permission::ViewUsers));
    }
}
