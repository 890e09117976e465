//! The plugin ABI: a versioned table of `extern "C"` functions.
//!
//! A plugin exports two symbols:
//! - [`ABI_VERSION_SYMBOL`] (`sluice_abi_version`): `extern "C" fn() -> u32`, checked first;
//! - [`ENTRY_SYMBOL`] (`sluice_job_v3`): `extern "C" fn() -> *const JobVTableV3`.
//!
//! The job description and the task context cross as bytes in the versioned form of
//! [`crate::codec`] (a pointer and a length, so any byte may appear in a name or a
//! parameter); bytes the plugin returns are released with the table's `free_bytes`.
//!
//! Record batches cross as a struct array through the Arrow C Data Interface
//! (`FFI_ArrowArray` + `FFI_ArrowSchema`), never as Rust types, so a plugin built with
//! another compiler or arrow version still loads. Every function returns [`STATUS_OK`],
//! [`STATUS_ERR`] or [`STATUS_INVALID_INPUT`] (an error not worth retrying); on error `*err`
//! points at a NUL-terminated message owned by the plugin,
//! released with the table's `free_string`. Panics never unwind across the boundary: each
//! export runs inside `catch_unwind` and a panic comes back as an error saying so.

use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use arrow_array::{Array, RecordBatch, StructArray};
use arrow_schema::Schema;

use crate::{Job, JobError, TaskContext};

/// The ABI version this SDK builds and this host accepts.
pub const ABI_VERSION: u32 = 3;
/// Name of the `extern "C" fn() -> u32` returning the plugin's ABI version.
pub const ABI_VERSION_SYMBOL: &str = "sluice_abi_version";
/// Name of the `extern "C" fn() -> *const JobVTableV3` entry point.
pub const ENTRY_SYMBOL: &str = "sluice_job_v3";
/// Success.
pub const STATUS_OK: i32 = 0;
/// Failure; `*err` holds the message.
pub const STATUS_ERR: i32 = 1;
/// Success with nothing to return (an optional item is absent).
pub const STATUS_NONE: i32 = 2;
/// The call failed because of its input, as [`STATUS_ERR`] with a message, and every
/// attempt would fail the same way ([`crate::JobError::invalid_input`]): not retried.
pub const STATUS_INVALID_INPUT: i32 = 3;

/// Bytes the plugin allocated and hands to the host, which returns them with the table's
/// `free_bytes`.
#[repr(C)]
#[derive(Debug)]
pub struct OwnedBytes {
    /// The first byte (null when `len` is 0).
    pub ptr: *mut u8,
    /// How many.
    pub len: usize,
}

impl OwnedBytes {
    /// No bytes.
    pub fn empty() -> Self {
        OwnedBytes {
            ptr: std::ptr::null_mut(),
            len: 0,
        }
    }

    /// Hands `bytes` over the boundary (plugin side).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        let boxed = bytes.into_boxed_slice();
        let len = boxed.len();
        OwnedBytes {
            ptr: Box::into_raw(boxed).cast::<u8>(),
            len,
        }
    }

    /// The bytes (host side).
    ///
    /// # Safety
    /// `ptr` and `len` must describe a live allocation, or `len` be 0.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: forwarded from the caller's contract.
        unsafe { borrowed(self.ptr, self.len) }
    }
}

/// The `len` bytes at `ptr`, which may be null when `len` is 0 (a slice may not be).
///
/// # Safety
/// `ptr` and `len` must describe live bytes for `'a`, or `len` be 0.
pub unsafe fn borrowed<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: forwarded from the caller's contract.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// `describe(out_bytes, err) -> status`: the encoded [`crate::JobDescription`].
pub type DescribeFn = unsafe extern "C" fn(*mut OwnedBytes, *mut *mut c_char) -> i32;
/// `input_schema(name, name_len, out_schema, err) -> status`: the schema of the named input
/// `name` (UTF-8; empty for the unnamed input); [`STATUS_NONE`] when the job lets the
/// engine infer it.
pub type InputSchemaFn =
    unsafe extern "C" fn(*const u8, usize, *mut FFI_ArrowSchema, *mut *mut c_char) -> i32;
/// `set_side_input(job, job_len, name, name_len, array, schema, err) -> status`: keeps the
/// table as side input `name` of job `job` (both UTF-8) for its map calls (see
/// [`crate::side`]). The callee takes ownership of `array` (moves it out).
pub type SetSideInputFn = unsafe extern "C" fn(
    *const u8,
    usize,
    *const u8,
    usize,
    *mut FFI_ArrowArray,
    *const FFI_ArrowSchema,
    *mut *mut c_char,
) -> i32;
/// `drop_side_inputs(job, job_len)`: forgets the side inputs of job `job`.
pub type DropSideInputsFn = unsafe extern "C" fn(*const u8, usize);
/// `call(context, context_len, in_array, in_schema, out_array, out_schema, counters, err)
/// -> status`, used for both map and reduce; `context` is the encoded [`crate::TaskContext`],
/// `counters` receives what the call counted (encoded; left empty when nothing). The callee
/// takes ownership of `in_array` (moves it out).
pub type BatchFn = unsafe extern "C" fn(
    *const u8,
    usize,
    *mut FFI_ArrowArray,
    *const FFI_ArrowSchema,
    *mut FFI_ArrowArray,
    *mut FFI_ArrowSchema,
    *mut OwnedBytes,
    *mut *mut c_char,
) -> i32;
/// Releases a string the plugin returned.
pub type FreeStringFn = unsafe extern "C" fn(*mut c_char);
/// Releases bytes the plugin returned.
pub type FreeBytesFn = unsafe extern "C" fn(OwnedBytes);

/// Version 3 of the function table a plugin exports.
#[repr(C)]
pub struct JobVTableV3 {
    /// Always [`ABI_VERSION`] of the SDK that built the plugin.
    pub abi_version: u32,
    /// See [`DescribeFn`].
    pub describe: DescribeFn,
    /// See [`InputSchemaFn`].
    pub input_schema: InputSchemaFn,
    /// Map one batch; see [`BatchFn`].
    pub map: BatchFn,
    /// Reduce whole key groups; see [`BatchFn`].
    pub reduce: BatchFn,
    /// The job's own data-quality checks of one input batch; see [`crate::Job::check`].
    pub check: BatchFn,
    /// See [`SetSideInputFn`].
    pub set_side_input: SetSideInputFn,
    /// See [`DropSideInputsFn`].
    pub drop_side_inputs: DropSideInputsFn,
    /// See [`FreeStringFn`].
    pub free_string: FreeStringFn,
    /// See [`FreeBytesFn`].
    pub free_bytes: FreeBytesFn,
}

/// Converts a batch into the C Data Interface pair (as one struct array).
pub fn batch_to_ffi(batch: RecordBatch) -> Result<(FFI_ArrowArray, FFI_ArrowSchema), JobError> {
    let data = StructArray::from(batch).into_data();
    Ok(to_ffi(&data)?)
}

/// Imports a batch from the C Data Interface pair.
///
/// # Safety
/// `array` and `schema` must be a valid, released-not-yet C Data Interface pair describing a
/// struct array.
pub unsafe fn batch_from_ffi(
    array: FFI_ArrowArray,
    schema: &FFI_ArrowSchema,
) -> Result<RecordBatch, JobError> {
    // SAFETY: forwarded from the caller's contract.
    let data = unsafe { from_ffi(array, schema) }?;
    if !matches!(data.data_type(), arrow_schema::DataType::Struct(_)) {
        return Err(JobError::new(format!(
            "a batch must cross the ABI as a struct array, got {}",
            data.data_type()
        )));
    }
    let s = StructArray::from(data);
    if s.null_count() > 0 {
        return Err(JobError::new("batch crossed the ABI with top-level nulls"));
    }
    Ok(RecordBatch::from(s))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs `f` so that neither an error nor a panic leaves the plugin: errors are written to
/// `err` as an owned C string. Used by the code `export_job!` expands to.
///
/// # Safety
/// `err` must be valid for a write.
pub unsafe fn guard(err: *mut *mut c_char, f: impl FnOnce() -> Result<i32, JobError>) -> i32 {
    let (outcome, status) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(status)) => return status,
        Ok(Err(e)) => {
            let status = if e.is_invalid_input() {
                STATUS_INVALID_INPUT
            } else {
                STATUS_ERR
            };
            (e.message().to_string(), status)
        }
        Err(payload) => (
            format!("job panicked: {}", panic_message(payload.as_ref())),
            STATUS_ERR,
        ),
    };
    let msg = CString::new(outcome.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: the caller guarantees `err` is writable.
    unsafe { err.write(msg.into_raw()) };
    status
}

/// Plugin side of `describe`.
///
/// # Safety
/// Pointers as in [`DescribeFn`].
pub unsafe fn export_describe<J: Job>(job: &J, out: *mut OwnedBytes, err: *mut *mut c_char) -> i32 {
    // SAFETY: the host passes writable pointers.
    unsafe {
        guard(err, || {
            out.write(OwnedBytes::from_vec(job.describe().encode()));
            Ok(STATUS_OK)
        })
    }
}

/// Plugin side of `input_schema`.
///
/// # Safety
/// Pointers as in [`InputSchemaFn`].
pub unsafe fn export_input_schema<J: Job>(
    job: &J,
    name: *const u8,
    name_len: usize,
    out: *mut FFI_ArrowSchema,
    err: *mut *mut c_char,
) -> i32 {
    // SAFETY: the host passes a valid name and writable pointers.
    unsafe {
        guard(err, || {
            match job.named_input_schema(utf8(name, name_len)?) {
                None => Ok(STATUS_NONE),
                Some(schema) => {
                    let ffi = FFI_ArrowSchema::try_from(schema.as_ref() as &Schema)?;
                    out.write(ffi);
                    Ok(STATUS_OK)
                }
            }
        })
    }
}

/// The UTF-8 text of `len` bytes at `ptr`.
///
/// # Safety
/// As [`borrowed`].
unsafe fn utf8<'a>(ptr: *const u8, len: usize) -> Result<&'a str, JobError> {
    // SAFETY: forwarded from the caller's contract.
    std::str::from_utf8(unsafe { borrowed(ptr, len) })
        .map_err(|e| JobError::new(format!("a name crossed the ABI as invalid UTF-8: {e}")))
}

/// Plugin side of `set_side_input`.
///
/// # Safety
/// Pointers as in [`SetSideInputFn`].
pub unsafe extern "C" fn export_set_side_input(
    job: *const u8,
    job_len: usize,
    name: *const u8,
    name_len: usize,
    table: *mut FFI_ArrowArray,
    schema: *const FFI_ArrowSchema,
    err: *mut *mut c_char,
) -> i32 {
    // SAFETY: the host passes valid pointers and gives up `table`.
    unsafe {
        guard(err, || {
            let array = FFI_ArrowArray::from_raw(table);
            let batch = batch_from_ffi(array, &*schema)?;
            crate::side::set(utf8(job, job_len)?, utf8(name, name_len)?, batch);
            Ok(STATUS_OK)
        })
    }
}

/// Plugin side of `drop_side_inputs`.
///
/// # Safety
/// As [`DropSideInputsFn`].
pub unsafe extern "C" fn export_drop_side_inputs(job: *const u8, job_len: usize) {
    let mut ignored: *mut c_char = std::ptr::null_mut();
    // SAFETY: the host passes a valid name; `ignored` is writable. A name that is not
    // UTF-8 names no job, and its error string is freed right here.
    unsafe {
        guard(&mut ignored, || {
            crate::side::drop_job(utf8(job, job_len)?);
            Ok(STATUS_OK)
        });
        export_free_string(ignored);
    }
}

/// Plugin side of `map` and `reduce`: imports the batch, calls `f`, exports the result.
///
/// # Safety
/// Pointers as in [`BatchFn`].
// The arguments mirror the C signature of `BatchFn` one to one, plus the Rust callback.
#[allow(clippy::too_many_arguments)]
pub unsafe fn export_batch_call<J: Job>(
    job: &J,
    ctx: *const u8,
    ctx_len: usize,
    input: *mut FFI_ArrowArray,
    input_schema: *const FFI_ArrowSchema,
    out: *mut FFI_ArrowArray,
    out_schema: *mut FFI_ArrowSchema,
    counters: *mut OwnedBytes,
    err: *mut *mut c_char,
    f: fn(&J, RecordBatch, &TaskContext) -> Result<RecordBatch, JobError>,
) -> i32 {
    // SAFETY: the host passes valid pointers and gives up `input`.
    unsafe {
        guard(err, || {
            let mut ctx = TaskContext::decode(borrowed(ctx, ctx_len))
                .map_err(|e| JobError::new(e.to_string()))?;
            ctx.sides = crate::side::of(&ctx.job_id);
            let array = FFI_ArrowArray::from_raw(input);
            let batch = batch_from_ffi(array, &*input_schema)?;
            let result = f(job, batch, &ctx)?;
            let (a, s) = batch_to_ffi(result)?;
            out.write(a);
            out_schema.write(s);
            let counts = ctx.counters.take();
            if !counts.is_empty() {
                let bytes = crate::codec::encode(crate::counters::COUNTERS_FORMAT, &counts);
                counters.write(OwnedBytes::from_vec(bytes));
            }
            Ok(STATUS_OK)
        })
    }
}

/// Plugin side of `free_string`.
///
/// # Safety
/// `s` must come from this plugin's `CString::into_raw` (or be null).
pub unsafe fn export_free_string(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: the pointer came from `CString::into_raw` in this library.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// Plugin side of `free_bytes`.
///
/// # Safety
/// `b` must come from this plugin's [`OwnedBytes::from_vec`].
pub unsafe fn export_free_bytes(b: OwnedBytes) {
    if !b.ptr.is_null() {
        let slice = std::ptr::slice_from_raw_parts_mut(b.ptr, b.len);
        // SAFETY: the pointer and length came from `Box::into_raw` of a boxed slice here.
        drop(unsafe { Box::from_raw(slice) });
    }
}

/// One `extern "C"` batch function of the ABI ([`BatchFn`]) named `$name`, calling `$call`
/// (a `fn(&Job, RecordBatch, &TaskContext)`) on the job `export_job!` made; map, reduce and
/// check differ only in that call.
#[doc(hidden)]
#[macro_export]
macro_rules! __sluice_batch_fn {
    ($name:ident, $call:expr) => {
        unsafe extern "C" fn $name(
            ctx: *const u8,
            ctx_len: usize,
            input: *mut $crate::arrow_array::ffi::FFI_ArrowArray,
            input_schema: *const $crate::arrow_array::ffi::FFI_ArrowSchema,
            out: *mut $crate::arrow_array::ffi::FFI_ArrowArray,
            out_schema: *mut $crate::arrow_array::ffi::FFI_ArrowSchema,
            counters: *mut $crate::abi::OwnedBytes,
            err: *mut *mut ::std::ffi::c_char,
        ) -> i32 {
            // SAFETY: the host upholds the ABI contract.
            unsafe {
                $crate::abi::export_batch_call(
                    __sluice_job(),
                    ctx,
                    ctx_len,
                    input,
                    input_schema,
                    out,
                    out_schema,
                    counters,
                    err,
                    $call,
                )
            }
        }
    };
}

/// Exports a [`Job`] type (which must implement `Default`) as a Sluice plugin.
///
/// Expands to the two `#[no_mangle]` symbols of the ABI and a static instance of the job.
#[macro_export]
macro_rules! export_job {
    ($job:ty) => {
        fn __sluice_job() -> &'static $job {
            static JOB: ::std::sync::OnceLock<$job> = ::std::sync::OnceLock::new();
            JOB.get_or_init(<$job as ::std::default::Default>::default)
        }

        unsafe extern "C" fn __sluice_describe(
            out: *mut $crate::abi::OwnedBytes,
            err: *mut *mut ::std::ffi::c_char,
        ) -> i32 {
            // SAFETY: the host upholds the ABI contract.
            unsafe { $crate::abi::export_describe(__sluice_job(), out, err) }
        }

        unsafe extern "C" fn __sluice_input_schema(
            name: *const u8,
            name_len: usize,
            out: *mut $crate::arrow_array::ffi::FFI_ArrowSchema,
            err: *mut *mut ::std::ffi::c_char,
        ) -> i32 {
            // SAFETY: the host upholds the ABI contract.
            unsafe { $crate::abi::export_input_schema(__sluice_job(), name, name_len, out, err) }
        }

        $crate::__sluice_batch_fn!(__sluice_map, |j, b, c| <$job as $crate::Job>::map(j, b, c));
        $crate::__sluice_batch_fn!(__sluice_check, |j, b, c| {
            <$job as $crate::Job>::check(j, &b, c)
        });
        $crate::__sluice_batch_fn!(__sluice_reduce, |j, b, c| {
            <$job as $crate::Job>::reduce(j, b, c)
        });

        unsafe extern "C" fn __sluice_free_string(s: *mut ::std::ffi::c_char) {
            // SAFETY: the host only frees strings this plugin returned.
            unsafe { $crate::abi::export_free_string(s) }
        }

        unsafe extern "C" fn __sluice_free_bytes(b: $crate::abi::OwnedBytes) {
            // SAFETY: the host only frees bytes this plugin returned.
            unsafe { $crate::abi::export_free_bytes(b) }
        }

        static __SLUICE_VTABLE: $crate::abi::JobVTableV3 = $crate::abi::JobVTableV3 {
            abi_version: $crate::abi::ABI_VERSION,
            describe: __sluice_describe,
            input_schema: __sluice_input_schema,
            map: __sluice_map,
            reduce: __sluice_reduce,
            check: __sluice_check,
            set_side_input: $crate::abi::export_set_side_input,
            drop_side_inputs: $crate::abi::export_drop_side_inputs,
            free_string: __sluice_free_string,
            free_bytes: __sluice_free_bytes,
        };

        /// ABI version of this plugin; the host checks it before anything else.
        #[unsafe(no_mangle)]
        pub extern "C" fn sluice_abi_version() -> u32 {
            $crate::abi::ABI_VERSION
        }

        /// The plugin's function table.
        #[unsafe(no_mangle)]
        pub extern "C" fn sluice_job_v3() -> *const $crate::abi::JobVTableV3 {
            &__SLUICE_VTABLE
        }
    };
}
