//! etcd's users and roles, for `wiremesh registry grant`: read a role's permissions, add and
//! change them, add a user and give it a role. Which permissions a node gets is
//! `core/registry/grant`'s decision; this only carries it out.

use super::{Etcd, EtcdError};
use crate::core::registry::grant::{Access, Perm};
use etcd_client::{Permission, PermissionType, RoleRevokePermissionOptions, UserAddOptions};

/// etcd's answer for a role or user that does not exist (`ErrRoleNotFound`, `ErrUserNotFound`).
fn not_found(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().ends_with("name not found"))
}

/// etcd's answer for a role or user that exists already.
fn exists(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().ends_with("name already exists"))
}

fn to_etcd(p: &Perm) -> Permission {
    let access = match p.access {
        Access::Read => PermissionType::Read,
        Access::Write => PermissionType::Write,
        Access::ReadWrite => PermissionType::Readwrite,
    };
    Permission::new(access, p.key.clone()).with_range_end(p.range_end.clone())
}

fn from_etcd(p: &Permission) -> Perm {
    let access = match PermissionType::try_from(p.get_type()) {
        Ok(PermissionType::Read) => Access::Read,
        Ok(PermissionType::Write) => Access::Write,
        // an access this build does not know is treated as the widest, so it is never kept
        // by mistake for a narrower one
        _ => Access::ReadWrite,
    };
    Perm {
        access,
        key: p.key().to_vec(),
        range_end: p.range_end().to_vec(),
    }
}

impl Etcd {
    /// The permissions `role` holds, or `None` when there is no such role.
    pub async fn role_permissions(&mut self, role: &str) -> Result<Option<Vec<Perm>>, EtcdError> {
        match self.client.role_get(role).await {
            Ok(answer) => Ok(Some(answer.permissions().iter().map(from_etcd).collect())),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.error(&format!("role {role}"), e)),
        }
    }

    /// Adds `role`; one that exists already is left as it is.
    pub async fn add_role(&mut self, role: &str) -> Result<(), EtcdError> {
        match self.client.role_add(role).await {
            Ok(_) => Ok(()),
            Err(e) if exists(&e) => Ok(()),
            Err(e) => Err(self.error(&format!("role {role}"), e)),
        }
    }

    /// Grants `perm` to `role`; a range the role holds already gets `perm`'s access.
    pub async fn grant_permission(&mut self, role: &str, perm: &Perm) -> Result<(), EtcdError> {
        self.client
            .role_grant_permission(role, to_etcd(perm))
            .await
            .map_err(|e| self.error(&format!("role {role}"), e))?;
        Ok(())
    }

    /// Takes `perm`'s range from `role`.
    pub async fn revoke_permission(&mut self, role: &str, perm: &Perm) -> Result<(), EtcdError> {
        let options = RoleRevokePermissionOptions::new().with_range_end(perm.range_end.clone());
        self.client
            .role_revoke_permission(role, perm.key.clone(), Some(options))
            .await
            .map_err(|e| self.error(&format!("role {role}"), e))?;
        Ok(())
    }

    /// Adds `user` with `password`, or without one (it is then known only by the CN of its
    /// client certificate). A user that exists keeps its roles; it gets `password` when one is
    /// given and keeps its own otherwise. True when the user was added.
    pub async fn ensure_user(
        &mut self,
        user: &str,
        password: Option<&str>,
    ) -> Result<bool, EtcdError> {
        let options = password
            .is_none()
            .then(|| UserAddOptions::new().with_no_pwd());
        match self
            .client
            .user_add(user, password.unwrap_or_default(), options)
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) if exists(&e) => {}
            Err(e) => return Err(self.error(&format!("user {user}"), e)),
        }
        if let Some(password) = password {
            self.client
                .user_change_password(user, password)
                .await
                .map_err(|e| self.error(&format!("user {user}"), e))?;
        }
        Ok(false)
    }

    /// Gives `role` to `user` (again: etcd answers a repeated grant with success).
    pub async fn grant_role(&mut self, user: &str, role: &str) -> Result<(), EtcdError> {
        self.client
            .user_grant_role(user, role)
            .await
            .map_err(|e| self.error(&format!("user {user}"), e))?;
        Ok(())
    }
}
