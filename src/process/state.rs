//! What this process knows about itself (name, identity, parent) and the
//! registry of children it ends or waits for when it exits.
#![cfg_attr(not(mp_spawn), allow(dead_code))]

use super::ChildrenAtExit;
use crate::os::launch::Child;
#[cfg(mp_spawn)]
use std::sync::Once;
use std::sync::{Arc, Mutex};

/// This process's identity as Python's `_identity`: empty in the main
/// process, the parent's plus a counter in a child (names "Process-1:2").
#[derive(Clone, Debug)]
pub(crate) struct Me {
    pub name: String,
    pub ident: Vec<u32>,
    pub daemon: bool,
    pub parent: Option<Parent>,
    /// Children created so far, for their identities.
    pub children: u32,
    /// Python's `current_process().authkey`: 32 random bytes made when
    /// first asked for in the main process, inherited by children.
    pub authkey: Option<Vec<u8>>,
}

/// The parent, as a child knows it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Parent {
    pub pid: u32,
    pub stamp: u32,
    pub name: String,
}

static ME: Mutex<Option<Me>> = Mutex::new(None);

fn main_process() -> Me {
    Me {
        name: "MainProcess".into(),
        ident: Vec::new(),
        daemon: false,
        parent: None,
        children: 0,
        authkey: None,
    }
}

pub(crate) fn with_me<R>(f: impl FnOnce(&mut Me) -> R) -> R {
    let mut me = ME.lock().unwrap_or_else(|e| e.into_inner());
    f(me.get_or_insert_with(main_process))
}

/// Holds this module's locks across a fork, so a child never inherits one
/// that another thread held mid-update (the pthread_atfork discipline).
#[cfg(mp_fork)]
pub(crate) fn hold_for_fork() -> impl Sized {
    let me = ME.lock().unwrap_or_else(|e| e.into_inner());
    let children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    (me, children)
}

/// Becomes a child: the identity the parent gave it.
pub(crate) fn become_child(
    name: String,
    ident: Vec<u32>,
    daemon: bool,
    parent: Parent,
    authkey: Vec<u8>,
) {
    let mut me = ME.lock().unwrap_or_else(|e| e.into_inner());
    *me =
        Some(Me { name, ident, daemon, parent: Some(parent), children: 0, authkey: Some(authkey) });
    drop(me);
    children(|c| c.clear());
}

/// This process's authkey, made now if it has none yet.
pub(crate) fn authkey() -> crate::Result<Vec<u8>> {
    let existing = with_me(|me| me.authkey.clone());
    if let Some(key) = existing {
        return Ok(key);
    }
    let fresh = fresh_authkey()?;
    Ok(with_me(|me| me.authkey.get_or_insert(fresh).clone()))
}

fn fresh_authkey() -> crate::Result<Vec<u8>> {
    Ok(crate::os::random::<32>()?.to_vec())
}

pub(crate) fn set_authkey(key: Vec<u8>) {
    with_me(|me| me.authkey = Some(key));
}

/// The next child's identity and default name.
pub(crate) fn next_child() -> (Vec<u32>, String) {
    with_me(|me| {
        me.children += 1;
        let mut ident = me.ident.clone();
        ident.push(me.children);
        let digits: Vec<String> = ident.iter().map(u32::to_string).collect();
        let name = format!("Process-{}", digits.join(":"));
        (ident, name)
    })
}

/// A child started here and not yet reaped: the same `Child` its `Process`
/// holds (so a forkserver's child is waited for through its server, and no
/// pid is ever looked up again after the `Process` is gone).
pub(crate) struct Registered {
    pub child: Arc<Child>,
    pub daemon: bool,
    /// A helper of this crate's (the forkserver), which the other children
    /// may need until they end.
    pub helper: bool,
}

/// Children started here and not yet reaped: at exit, the daemons are
/// terminated and the others waited for.
static CHILDREN: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

/// Runs `f` with the registry locked: reaping a child and removing it
/// happen together, so the exit never signals or waits on a reaped pid.
pub(crate) fn children<R>(f: impl FnOnce(&mut Vec<Registered>) -> R) -> R {
    let mut children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut children)
}

pub(crate) fn add_child(child: Arc<Child>, daemon: bool, helper: bool) {
    #[cfg(mp_spawn)]
    register_exit_handler();
    children(|c| c.push(Registered { child, daemon, helper }));
}

/// What the exit does with non-daemon children ([`ChildrenAtExit`]).
static AT_EXIT: Mutex<ChildrenAtExit> = Mutex::new(ChildrenAtExit::Join);

pub(crate) fn set_children_at_exit(policy: ChildrenAtExit) {
    *AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()) = policy;
}

/// What other modules asked to be done as this process exits (the private
/// directory of socket files removed, say), each once.
static EXIT_HOOKS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Has `hook` run as this process exits normally (after its daemons are
/// terminated); asking again for the same hook changes nothing.
#[cfg(mp_spawn)]
#[cfg_attr(not(mp_transfer), allow(dead_code))]
pub(crate) fn at_exit(hook: fn()) {
    register_exit_handler();
    let mut hooks = EXIT_HOOKS.lock().unwrap_or_else(|e| e.into_inner());
    if !hooks.iter().any(|&h| std::ptr::fn_addr_eq(h, hook)) {
        hooks.push(hook);
    }
}

/// What a process does as it exits normally (the main process from its
/// exit handler, a child in `finish`): its daemon children terminated, its
/// other children waited for (as [`set_children_at_exit`] says), its
/// helpers ended, then the hooks of [`at_exit`].
#[cfg(mp_spawn)]
pub(crate) fn on_exit() {
    let registered = children(std::mem::take);
    let (helpers, users): (Vec<_>, Vec<_>) = registered.into_iter().partition(|r| r.helper);
    let (daemons, others): (Vec<_>, Vec<_>) = users.into_iter().partition(|r| r.daemon);
    terminate_daemons(daemons.into_iter().map(|r| r.child).collect());
    join_children(others.into_iter().map(|r| r.child));
    terminate_daemons(helpers.into_iter().map(|r| r.child).collect());
    let hooks = EXIT_HOOKS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for hook in hooks {
        hook();
    }
}

/// Makes sure [`on_exit`] runs when this process exits normally.
#[cfg(mp_spawn)]
fn register_exit_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        extern "C" fn at_exit() {
            on_exit();
        }
        let _ = crate::os::launch::at_exit(at_exit);
    });
}

/// Python's exit behaviour for daemons: SIGTERM each, wait a little, then
/// SIGKILL the stragglers and reap them all.
#[cfg(mp_spawn)]
fn terminate_daemons(children: Vec<Arc<Child>>) {
    use std::time::Duration;
    for child in &children {
        let _ = child.terminate();
    }
    for child in &children {
        if !matches!(child.wait_timeout(Some(Duration::from_millis(500))), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait_timeout(Some(Duration::from_secs(5)));
        }
    }
}

/// Python's exit behaviour for the other children: each is waited for (at
/// most as long as [`set_children_at_exit`] allows, in all).
#[cfg(mp_spawn)]
fn join_children(children: impl Iterator<Item = Arc<Child>>) {
    use std::time::Instant;
    let policy = *AT_EXIT.lock().unwrap_or_else(|e| e.into_inner());
    let deadline = match policy {
        ChildrenAtExit::Join => None,
        ChildrenAtExit::JoinAtMost(d) => Instant::now().checked_add(d),
        ChildrenAtExit::Leave => return,
    };
    for child in children {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let _ = child.wait_timeout(left);
    }
}
