//! Security descriptors (from SDDL) and the SID of the user this process runs as.

use std::ffi::OsString;
use std::io;
use std::os::windows::ffi::OsStringExt;
use std::os::windows::io::{AsHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::ptr;

use windows_sys::Win32::Foundation::{ERROR_INSUFFICIENT_BUFFER, HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, PSECURITY_DESCRIPTOR, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::call::{code, cvt, io_len, last_error, raw, wide};

/// A security descriptor from `ConvertStringSecurityDescriptorToSecurityDescriptorW`, freed
/// with `LocalFree`.
#[derive(Debug)]
pub(crate) struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is a self-contained block of memory that is only read after
// creation, so it may be used and freed from any thread.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above; no method mutates it.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    /// Parses an SDDL string.
    pub(crate) fn from_sddl(sddl: &str) -> io::Result<SecurityDescriptor> {
        let text = wide(sddl)?;
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `text` is NUL-terminated; `sd` is a valid out-pointer; the size output is
        // not asked for.
        cvt(unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                ptr::null_mut(),
            )
        })?;
        Ok(SecurityDescriptor(sd))
    }

    /// The descriptor, for `SECURITY_ATTRIBUTES`.
    pub(super) fn as_ptr(&self) -> PSECURITY_DESCRIPTOR {
        self.0
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: the descriptor was allocated by the SDDL conversion with LocalAlloc and is
        // freed once.
        unsafe { LocalFree(self.0) };
    }
}

/// The SID of the user this process runs as, in its string form (`S-1-5-21-…`).
pub(crate) fn current_user_sid() -> io::Result<String> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: returns the pseudo-handle of this process, which needs no closing.
    let process = unsafe { GetCurrentProcess() };
    // SAFETY: a valid process handle; `token` is a valid out-pointer.
    cvt(unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) })?;
    // SAFETY: `token` is a fresh handle that nothing else owns.
    let token = unsafe { OwnedHandle::from_raw_handle(token as RawHandle) };

    // TOKEN_USER holds a pointer into the same buffer; u64 words keep it aligned.
    let mut buffer: Vec<u64> = vec![0; 16];
    loop {
        let size = io_len(buffer.len() * 8);
        let mut needed = 0u32;
        // SAFETY: `buffer` is valid for `size` bytes; `needed` is a valid out-pointer.
        let ok = unsafe {
            GetTokenInformation(
                raw(token.as_handle()),
                TokenUser,
                buffer.as_mut_ptr().cast(),
                size,
                &mut needed,
            )
        };
        if ok != 0 {
            break;
        }
        let err = last_error();
        if code(&err) != Some(ERROR_INSUFFICIENT_BUFFER) || needed <= size {
            return Err(err);
        }
        buffer.resize((needed as usize).div_ceil(8), 0);
    }
    // SAFETY: the call succeeded, so the buffer starts with an initialized, aligned
    // TOKEN_USER.
    let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` points into `buffer`, which is alive; `text` is a valid out-pointer.
    cvt(unsafe { ConvertSidToStringSidW(sid, &mut text) })?;
    // On success `text` is a NUL-terminated string allocated with LocalAlloc.
    let mut len = 0;
    // SAFETY: every unit up to and including the terminating NUL is readable.
    while unsafe { text.wrapping_add(len).read() } != 0 {
        len += 1;
    }
    // SAFETY: the `len` units before the NUL are initialised and stay alive until freed.
    let string = OsString::from_wide(unsafe { std::slice::from_raw_parts(text, len) });
    // SAFETY: `text` came from LocalAlloc and is freed once; `string` holds a copy.
    unsafe { LocalFree(text.cast()) };
    string
        .into_string()
        .map_err(|_| io::Error::other("the user's SID is not valid Unicode"))
}
