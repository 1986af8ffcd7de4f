//! Secret<T>: one value in exclusive memory.
use std::ffi::c_void;
use std::fmt;
use std::marker::PhantomData;
use std::mem;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::{sys, Error, Protection, Result};

/// The heap's alignment: small objects sit on 16-byte boundaries, large ones on
/// pages.
pub(crate) const HEAP_ALIGN: usize = 16;

struct AlignCheck<T>(PhantomData<T>);
impl<T> AlignCheck<T> {
    const OK: () = assert!(mem::align_of::<T>() <= HEAP_ALIGN, "exmem::Secret<T>: T needs more than 16-byte alignment");
}

/// One `T` in exclusive memory, owned. Its bytes are wiped when it is dropped
/// (exmem_free wipes). `T: Copy`, so it has no destructor that could leave
/// copies behind, and reads through `*secret` borrow the value in place.
///
/// Build the value in place with [`Secret::new_with`] to avoid a copy on the
/// stack; [`Secret::new`] moves `value` in (the argument's stack copy is the
/// caller's).
///
/// A `T` aligned beyond 16 bytes does not compile:
/// ```compile_fail,E0080
/// #[derive(Clone, Copy)]
/// #[repr(align(64))]
/// struct Wide([u8; 64]);
/// let _ = exmem::Secret::new(Wide([0; 64]));
/// ```
pub struct Secret<T: Copy> {
    ptr: NonNull<T>,
    _owns: PhantomData<T>,
}

// SAFETY: the heap is thread-safe (objects may be freed from any thread), and
// Secret<T> owns its T like a Box<T> does.
unsafe impl<T: Copy + Send> Send for Secret<T> {}
unsafe impl<T: Copy + Sync> Sync for Secret<T> {}

impl<T: Copy> Secret<T> {
    fn alloc_zeroed() -> Result<NonNull<T>> {
        #[allow(clippy::let_unit_value)]
        let () = AlignCheck::<T>::OK;
        let size = mem::size_of::<T>().max(1);
        // SAFETY: plain allocation; free objects are zero, calloc says so.
        let p = unsafe { sys::exmem_calloc(1, size) } as *mut T;
        NonNull::new(p).ok_or_else(Error::last)
    }

    /// Moves `value` into exclusive memory.
    pub fn new(value: T) -> Result<Secret<T>> {
        let ptr = Self::alloc_zeroed()?;
        // SAFETY: ptr is a fresh, aligned object of size_of::<T>() bytes.
        unsafe { ptr.as_ptr().write(value) };
        Ok(Secret { ptr, _owns: PhantomData })
    }

    /// A value whose bytes are all zero.
    ///
    /// # Safety
    /// All-zero bytes must be a valid `T` (true of integers, arrays of them,
    /// plain structs of them; false of references and `NonZero*`).
    pub unsafe fn zeroed() -> Result<Secret<T>> {
        let ptr = Self::alloc_zeroed()?;
        Ok(Secret { ptr, _owns: PhantomData })
    }

    /// Starts from `initial` and lets `fill` finish the value in place, in
    /// exclusive memory (e.g. `Secret::new_with([0u8; 32], |k| derive(k))`).
    pub fn new_with<F: FnOnce(&mut T)>(initial: T, fill: F) -> Result<Secret<T>> {
        let mut s = Self::new(initial)?;
        fill(&mut s);
        Ok(s)
    }

    /// The address of the value (exmem memory).
    pub fn as_ptr(&self) -> *const T {
        self.ptr.as_ptr()
    }

    /// The mutable address of the value.
    pub fn as_mut_ptr(&mut self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// A copy in new exclusive memory.
    pub fn try_clone(&self) -> Result<Secret<T>> {
        Secret::new(**self)
    }

    /// The protection of the memory holding the value.
    pub fn protection(&self) -> Protection {
        crate::is_exclusive(&**self)
    }
}

impl<T: Copy> Deref for Secret<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: ptr is a live, initialised T owned by self.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Copy> DerefMut for Secret<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, borrowed mutably through &mut self.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: Copy> Drop for Secret<T> {
    fn drop(&mut self) {
        // SAFETY: the object is ours; exmem_free wipes it before release.
        unsafe { sys::exmem_free(self.ptr.as_ptr() as *mut c_void) };
    }
}

impl<T: Copy> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret<{}>(<redacted>)", std::any::type_name::<T>())
    }
}
