//! A host-owned object (a storage pool, a network) as a snapshot readers clone without
//! waiting, plus an operation lock a state change holds across its backend calls. A change
//! edits a copy of the snapshot and publishes it when the edit is dropped, so queries never
//! wait for a slow operation.

use std::sync::{Arc, Mutex, MutexGuard};

/// One object's published snapshot and its operation lock.
pub(crate) struct Snapshot<T> {
    op: Mutex<()>,
    view: Mutex<Arc<T>>,
}

impl<T: Clone> Snapshot<T> {
    pub(crate) fn new(o: T) -> Self {
        Snapshot {
            op: Mutex::new(()),
            view: Mutex::new(Arc::new(o)),
        }
    }

    /// The object as it is now (no waiting for an operation in progress).
    pub(crate) fn view(&self) -> Arc<T> {
        lock(&self.view).clone()
    }

    /// Waits for the operation lock and returns an editable copy, published when the edit
    /// is dropped.
    pub(crate) fn edit(&self) -> Edit<'_, T> {
        let op = lock(&self.op);
        let obj = Some((*self.view()).clone());
        Edit {
            snapshot: self,
            _op: op,
            obj,
        }
    }
}

/// An edit in progress: the operation lock and the copy being changed.
pub(crate) struct Edit<'a, T> {
    snapshot: &'a Snapshot<T>,
    _op: MutexGuard<'a, ()>,
    obj: Option<T>,
}

impl<T> std::ops::Deref for Edit<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.obj.as_ref().expect("present until drop")
    }
}

impl<T> std::ops::DerefMut for Edit<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.obj.as_mut().expect("present until drop")
    }
}

impl<T> Drop for Edit<'_, T> {
    fn drop(&mut self) {
        if let Some(o) = self.obj.take() {
            *lock(&self.snapshot.view) = Arc::new(o);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
