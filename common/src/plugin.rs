//! Loading a job plugin with `dlopen` and calling it over the C ABI of `sluice_sdk::abi`.
//!
//! A loaded library is never unloaded: arrays a plugin returns carry release callbacks that
//! point into its code, so the library must outlive every batch it produced. [`Plugin::load`]
//! keeps each library in a process-wide table and hands out `Arc`s to it; loading the same
//! file twice returns the same plugin.
//!
//! Side inputs are handed to the plugin once per job and process
//! ([`Plugin::ensure_side_inputs`]) and dropped when the job ends ([`forget_job`]).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, c_char};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use libloading::Library;
use sluice_sdk::abi::{
    ABI_VERSION, ABI_VERSION_SYMBOL, BatchFn, ENTRY_SYMBOL, JobVTableV3, OwnedBytes,
    STATUS_INVALID_INPUT, STATUS_NONE, STATUS_OK, batch_from_ffi, batch_to_ffi,
};
use sluice_sdk::codec;
use sluice_sdk::counters::COUNTERS_FORMAT;
use sluice_sdk::{JobDescription, TaskContext};

use crate::{Error, Result};

/// A loaded job plugin.
pub struct Plugin {
    path: PathBuf,
    vtable: *const JobVTableV3,
    description: JobDescription,
    input_schema: Option<SchemaRef>,
    /// Jobs whose side inputs the plugin holds (`true`) or that are being loaded: the first
    /// task of a job loads them while the job's other tasks wait on its lock.
    sides: Mutex<HashMap<String, Arc<Mutex<bool>>>>,
    /// Kept for the process's lifetime (see the module docs).
    _library: Library,
}

// SAFETY: the vtable is a `static` in the plugin, and every job is `Send + Sync` (the SDK's
// `Job` trait requires it), so calls from any thread are sound.
unsafe impl Send for Plugin {}
// SAFETY: as above.
unsafe impl Sync for Plugin {}

fn loaded() -> &'static Mutex<HashMap<PathBuf, Arc<Plugin>>> {
    static LOADED: std::sync::OnceLock<Mutex<HashMap<PathBuf, Arc<Plugin>>>> =
        std::sync::OnceLock::new();
    LOADED.get_or_init(Default::default)
}

/// Drops job `job`'s side inputs from every plugin this process loaded (the job ended);
/// returns how many plugins held some.
pub fn forget_job(job: &str) -> usize {
    let plugins: Vec<Arc<Plugin>> = loaded()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    plugins.iter().filter(|p| p.drop_side_inputs(job)).count()
}

impl Plugin {
    /// Loads the plugin at `path`, refusing a file that is not a shared library, lacks the
    /// entry symbols, or was built for another ABI version.
    pub fn load(path: &Path) -> Result<Arc<Plugin>> {
        let refuse = |reason: String| Error::PluginLoad {
            path: path.to_path_buf(),
            reason,
        };
        let canonical = path
            .canonicalize()
            .map_err(|e| refuse(format!("cannot open: {e}")))?;
        let mut table = loaded().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = table.get(&canonical) {
            return Ok(p.clone());
        }
        let mut magic = [0u8; 4];
        File::open(&canonical)
            .and_then(|mut f| f.read_exact(&mut magic))
            .map_err(|e| refuse(format!("cannot read: {e}")))?;
        if &magic != b"\x7fELF" {
            return Err(refuse(
                "not a shared library (no ELF header); build the job as a cdylib".into(),
            ));
        }
        // SAFETY: loading runs the library's initialisers; a Sluice plugin has none beyond
        // Rust's. This is the trust boundary of running user code, as a Hadoop jar is.
        let library = unsafe { Library::new(&canonical) }
            .map_err(|e| refuse(format!("cannot be loaded as a shared library: {e}")))?;
        // SAFETY: the symbol's type is fixed by the ABI.
        let version = unsafe {
            let f = library
                .get::<extern "C" fn() -> u32>(ABI_VERSION_SYMBOL.as_bytes())
                .map_err(|_| {
                    refuse(format!(
                        "lacks the symbol {ABI_VERSION_SYMBOL}: not a Sluice job plugin (use export_job!)"
                    ))
                })?;
            f()
        };
        if version != ABI_VERSION {
            return Err(refuse(format!(
                "was built for plugin ABI version {version}; this Sluice supports version {ABI_VERSION} (rebuild it against this sluice-sdk)"
            )));
        }
        // SAFETY: as above; the ABI version matched, so the table layout is ours.
        let vtable = unsafe {
            let f = library
                .get::<extern "C" fn() -> *const JobVTableV3>(ENTRY_SYMBOL.as_bytes())
                .map_err(|_| refuse(format!("lacks the entry symbol {ENTRY_SYMBOL}")))?;
            f()
        };
        if vtable.is_null() {
            return Err(refuse(format!("{ENTRY_SYMBOL} returned null")));
        }
        let mut plugin = Plugin {
            path: canonical.clone(),
            vtable,
            description: JobDescription {
                name: String::new(),
                key_columns: Vec::new(),
                reduce: sluice_sdk::ReduceKind::Custom,
                input_columns: None,
                rules: Vec::new(),
                checks: Vec::new(),
                sort_columns: Vec::new(),
            },
            input_schema: None,
            sides: Mutex::default(),
            _library: library,
        };
        plugin.description = plugin.call_describe().map_err(|e| refuse(e.to_string()))?;
        plugin.input_schema = plugin
            .named_input_schema("")
            .map_err(|e| refuse(e.to_string()))?;
        let plugin = Arc::new(plugin);
        table.insert(canonical, plugin.clone());
        Ok(plugin)
    }

    fn vtable(&self) -> &JobVTableV3 {
        // SAFETY: points at the plugin's static table; the library is never unloaded.
        unsafe { &*self.vtable }
    }

    /// The library file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the job declared: name, keys, aggregates or custom reduce.
    pub fn description(&self) -> &JobDescription {
        &self.description
    }

    /// The input schema the job declared, if any.
    pub fn input_schema(&self) -> Option<SchemaRef> {
        self.input_schema.clone()
    }

    /// Takes an error string the plugin returned, freeing it with the plugin's allocator.
    /// The error a call that returned `status` left in `err`.
    fn take_error(&self, status: i32, err: *mut c_char) -> Error {
        let message = if err.is_null() {
            "plugin failed without a message".to_string()
        } else {
            // SAFETY: a non-null error is a NUL-terminated string the plugin allocated.
            let text = unsafe { CStr::from_ptr(err) }
                .to_string_lossy()
                .into_owned();
            // SAFETY: returned to the allocator that made it.
            unsafe { (self.vtable().free_string)(err) };
            text
        };
        Error::Plugin {
            job: self.description.name.clone(),
            message,
            invalid_input: status == STATUS_INVALID_INPUT,
        }
    }

    fn call_describe(&self) -> Result<JobDescription> {
        let mut out = OwnedBytes::empty();
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: both pointers are valid for writes.
        let status = unsafe { (self.vtable().describe)(&mut out, &mut err) };
        if status != STATUS_OK {
            return Err(self.take_error(status, err));
        }
        // SAFETY: on success `out` holds bytes the plugin allocated (or none).
        let decoded = JobDescription::decode(unsafe { out.as_slice() });
        // SAFETY: returned to the allocator that made them.
        unsafe { (self.vtable().free_bytes)(out) };
        decoded.map_err(|e| Error::Unsupported {
            what: "the job description".into(),
            reason: e.to_string(),
        })
    }

    /// The schema the job declares for the named input (or side input) `name` (`""`: the
    /// unnamed input), if any.
    pub fn named_input_schema(&self, name: &str) -> Result<Option<SchemaRef>> {
        let mut out = FFI_ArrowSchema::empty();
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the name is valid for the call; both pointers are valid for writes.
        let status =
            unsafe { (self.vtable().input_schema)(name.as_ptr(), name.len(), &mut out, &mut err) };
        match status {
            STATUS_NONE => Ok(None),
            STATUS_OK => {
                let schema = Schema::try_from(&out)
                    .map_err(|e| Error::arrow("importing the job's input schema", e))?;
                Ok(Some(Arc::new(schema)))
            }
            _ => Err(self.take_error(status, err)),
        }
    }

    fn call_batch(&self, f: BatchFn, batch: RecordBatch, ctx: &TaskContext) -> Result<RecordBatch> {
        let encoded = ctx.encode();
        let (mut array, schema) =
            batch_to_ffi(batch).map_err(|e| Error::arrow("exporting a batch", e))?;
        let mut out = FFI_ArrowArray::empty();
        let mut out_schema = FFI_ArrowSchema::empty();
        let mut counted = OwnedBytes::empty();
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: all pointers are valid; the plugin takes `array` (leaving it released).
        let status = unsafe {
            f(
                encoded.as_ptr(),
                encoded.len(),
                &mut array,
                &schema,
                &mut out,
                &mut out_schema,
                &mut counted,
                &mut err,
            )
        };
        if status != STATUS_OK {
            return Err(self.take_error(status, err));
        }
        // SAFETY: on success `counted` holds bytes the plugin allocated (or none).
        let counts = unsafe { counted.as_slice() };
        let decoded = (!counts.is_empty()).then(|| {
            codec::decode::<BTreeMap<String, i64>>(COUNTERS_FORMAT, "the counters", counts)
        });
        // SAFETY: returned to the allocator that made them.
        unsafe { (self.vtable().free_bytes)(counted) };
        if let Some(decoded) = decoded {
            let decoded = decoded.map_err(|e| Error::Plugin {
                job: self.description.name.clone(),
                message: format!("returned unreadable counters: {e}"),
                invalid_input: false,
            })?;
            for (name, n) in decoded {
                ctx.counter(&name, n);
            }
        }
        // SAFETY: on success the plugin wrote a valid struct array and its schema.
        let batch = unsafe { batch_from_ffi(out, &out_schema) }.map_err(|e| Error::Plugin {
            job: self.description.name.clone(),
            message: format!("returned an unreadable batch: {e}"),
            invalid_input: false,
        })?;
        // The engine trusts nothing it did not build: buffers, offsets and UTF-8 are checked
        // before any kernel reads them, so a plugin built against another arrow (or a buggy
        // one) fails its task instead of corrupting the worker's memory.
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            column
                .to_data()
                .validate_full()
                .map_err(|e| Error::Plugin {
                    job: self.description.name.clone(),
                    message: format!("returned an invalid batch: column {}: {e}", field.name()),
                    invalid_input: false,
                })?;
        }
        Ok(batch)
    }

    /// Hands job `job`'s side inputs to the plugin unless it holds them already: the first
    /// caller runs `load` (while the job's other callers wait for it); a failed load leaves
    /// nothing behind, so the next task tries again.
    pub fn ensure_side_inputs(
        &self,
        job: &str,
        load: impl FnOnce() -> Result<Vec<(String, RecordBatch)>>,
    ) -> Result<()> {
        let cell = self
            .sides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(job.to_string())
            .or_default()
            .clone();
        let mut held = cell.lock().unwrap_or_else(|p| p.into_inner());
        if *held {
            return Ok(());
        }
        let tables = load()?;
        for (name, table) in tables {
            self.set_side_input(job, &name, table)?;
        }
        *held = true;
        Ok(())
    }

    fn set_side_input(&self, job: &str, name: &str, table: RecordBatch) -> Result<()> {
        let (mut array, schema) =
            batch_to_ffi(table).map_err(|e| Error::arrow("exporting a side input", e))?;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the names are valid for the call; the plugin takes `array`.
        let status = unsafe {
            (self.vtable().set_side_input)(
                job.as_ptr(),
                job.len(),
                name.as_ptr(),
                name.len(),
                &mut array,
                &schema,
                &mut err,
            )
        };
        if status != STATUS_OK {
            let error = self.take_error(status, err);
            // What it holds of the job's tables is dropped: the next load starts over.
            self.release_side_inputs(job);
            return Err(error);
        }
        Ok(())
    }

    /// Drops job `job`'s side inputs from the plugin; whether it held any.
    fn drop_side_inputs(&self, job: &str) -> bool {
        let held = self
            .sides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(job);
        if held.is_some() {
            self.release_side_inputs(job);
        }
        held.is_some()
    }

    fn release_side_inputs(&self, job: &str) {
        // SAFETY: the name is valid for the call.
        unsafe { (self.vtable().drop_side_inputs)(job.as_ptr(), job.len()) };
    }

    /// Calls the job's `map` on one batch; what it counted is added to `ctx`'s counters.
    pub fn map(&self, batch: RecordBatch, ctx: &TaskContext) -> Result<RecordBatch> {
        self.call_batch(self.vtable().map, batch, ctx)
    }

    /// Calls the job's own checks (`Job::check`) on one input batch: one `Boolean` column
    /// per check the job names, as many rows as `batch`.
    pub fn check(&self, batch: RecordBatch, ctx: &TaskContext) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let out = self.call_batch(self.vtable().check, batch, ctx)?;
        let names = &self.description.checks;
        let fits = out.num_rows() == rows
            && out.num_columns() == names.len()
            && out
                .columns()
                .iter()
                .all(|c| c.data_type() == &arrow::datatypes::DataType::Boolean);
        if !fits {
            return Err(Error::Plugin {
                job: self.description.name.clone(),
                message: format!(
                    "check returned {} columns of {} rows ({}); expected one Boolean column \
                     per check ({}) of {rows} rows",
                    out.num_columns(),
                    out.num_rows(),
                    out.schema()
                        .fields()
                        .iter()
                        .map(|f| f.data_type().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    names.join(", ")
                ),
                invalid_input: true,
            });
        }
        Ok(out)
    }

    /// Calls the job's `reduce` on whole key groups; what it counted is added to `ctx`'s
    /// counters.
    pub fn reduce(&self, batch: RecordBatch, ctx: &TaskContext) -> Result<RecordBatch> {
        self.call_batch(self.vtable().reduce, batch, ctx)
    }
}
