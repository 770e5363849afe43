//! Waking waiters after a commit.

use tokio::sync::Notify;

/// Wakes every task waiting on `notify` now, and leaves one permit for a task that checked for
/// work just before the commit but starts waiting just after it: without the permit that task
/// would sleep through the change it is waiting for. A stray permit only costs one empty poll.
pub(crate) fn wake(notify: &Notify) {
    notify.notify_waiters();
    notify.notify_one();
}
