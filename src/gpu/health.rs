//! Device health: device loss and GPU errors, reported through the device's callbacks on a
//! device the crate owns, or kept by validation error scopes on the caller's device.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{DeviceOwner, Gpu};
use crate::error::{Error, Result};
use crate::gpu::pipelines::lock;

/// What the device's callbacks report, read by every launch.
#[derive(Default)]
pub(super) struct Health {
    lost: AtomicBool,
    lost_reason: Mutex<Option<String>>,
    error: Mutex<Option<String>>,
}

impl Health {
    /// A fresh record, filled by the device's callbacks where the crate owns the device (the
    /// caller's callbacks are left in place on theirs).
    pub fn watch(device: &wgpu::Device, owner: DeviceOwner) -> Arc<Health> {
        let health = Arc::new(Health::default());
        if owner == DeviceOwner::Crate {
            let h = health.clone();
            device.set_device_lost_callback(move |reason, message| {
                h.lost.store(true, Ordering::SeqCst);
                if let Ok(mut r) = h.lost_reason.lock() {
                    *r = Some(format!("{reason:?}: {message}"));
                }
            });
            let h = health.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut slot) = h.error.lock() {
                    slot.get_or_insert_with(|| e.to_string());
                }
            }));
        }
        health
    }
}

impl Gpu {
    /// Runs `f`, and on the caller's device inside a validation error scope: an error it
    /// raises is kept for the next [`Gpu::check`] instead of reaching the caller's handler. In
    /// a browser every device's work runs inside validation and out-of-memory scopes, whose
    /// errors the next asynchronous synchronize or read-back returns (its handler would report
    /// them only to the console).
    pub(super) fn scoped<T>(&self, f: impl FnOnce() -> T) -> T {
        if self.owner == DeviceOwner::Crate && !cfg!(target_arch = "wasm32") {
            return f();
        }
        let memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        for scope in [validation, memory] {
            let health = self.health.clone();
            // Natively kept for the next check; in a browser, returned by the next settle.
            let kept = self.scopes.pop(scope, move |e| {
                let message = e.to_string();
                if cfg!(not(target_arch = "wasm32"))
                    && let Ok(mut slot) = health.error.lock()
                {
                    slot.get_or_insert_with(|| message.clone());
                }
                Error::Gpu {
                    op: "the crate's work",
                    message,
                }
            });
            drop(kept);
        }
        out
    }

    /// Whether `buffer` is a buffer of this device, as far as wgpu lets anyone tell.
    ///
    /// wgpu 30 says nothing of a buffer's device or instance: `wgpu::Buffer` compares and
    /// hashes by an id that is unique only within its instance, and the device looks that id
    /// up among its own instance's buffers. So the buffer is tried on one-binding bind groups
    /// inside a validation error scope, each of which wgpu checks against the buffer the id
    /// names in this device's instance: its last bytes must bind (it is this device's, has
    /// `STORAGE` usage and is no smaller) and the bytes just past its size must not (it is no
    /// larger). A buffer of another device of the same instance fails the first on wgpu's own
    /// device check. An id of another instance that names nothing here makes wgpu panic; that
    /// panic is caught (natively, where panics unwind) and reported like the rest. What no
    /// check can see is an id of another instance that names a storage buffer of this device
    /// of the same size. In a browser the probes' answers would come only after the call
    /// returns: nothing is probed there, and a foreign buffer's error comes back from the next
    /// asynchronous synchronize or read-back (the browser validates every binding).
    #[cfg(target_arch = "wasm32")]
    pub fn check_own_buffer(&self, _buffer: &wgpu::Buffer) -> std::result::Result<(), String> {
        Ok(())
    }

    /// See the browser's [`Gpu::check_own_buffer`] above for what is checked where.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn check_own_buffer(&self, buffer: &wgpu::Buffer) -> std::result::Result<(), String> {
        let size = buffer.size();
        let align = u64::from(self.limits.min_storage_buffer_offset_alignment).max(4);
        // The last whole words of the buffer, from an aligned offset.
        let tail_start = size.saturating_sub(4) / align * align;
        let tail = (tail_start, (size - tail_start) / 4 * 4);
        // Four bytes from the first aligned offset at or past its end.
        let past = (size.next_multiple_of(align), 4);
        let probes = || {
            self.binds(buffer, tail.0, tail.1)?;
            let larger = self.binds(buffer, past.0, past.1).is_ok();
            if larger {
                return Err(format!(
                    "the buffer's id names a buffer larger than its {size} bytes on this device"
                ));
            }
            Ok(())
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(probes))
            .unwrap_or_else(|_| Err("wgpu knows no such buffer on this device's instance".into()))
    }

    /// Whether `size` bytes of `buffer` from `offset` bind as storage on this device (wgpu's
    /// validation message otherwise).
    #[cfg(not(target_arch = "wasm32"))]
    fn binds(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> std::result::Result<(), String> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("external buffer check"),
                entries: &[wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                }],
            });
        let _ = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("external buffer check"),
            layout: &layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset,
                    size: wgpu::BufferSize::new(size.max(4)),
                }),
            }],
        });
        match pollster::block_on(scope.pop()) {
            Some(e) => Err(e.to_string()),
            None => Ok(()),
        }
    }

    /// Destroys the device and marks the context lost (for testing fault handling).
    pub fn destroy(&self) {
        self.health.lost.store(true, Ordering::SeqCst);
        if let Ok(mut r) = self.health.lost_reason.lock() {
            r.get_or_insert_with(|| "destroyed by Context::destroy_device".into());
        }
        self.device.destroy();
    }

    pub(super) fn has_kept_error(&self) -> bool {
        self.health.error.lock().is_ok_and(|e| e.is_some())
    }

    /// Fails with the device-lost or captured GPU error, if one occurred.
    pub fn check(&self, op: &'static str) -> Result<()> {
        if self.health.lost.load(Ordering::SeqCst) {
            let reason = lock(&self.health.lost_reason)?
                .clone()
                .unwrap_or_else(|| "unknown reason".into());
            return Err(Error::DeviceLost(reason));
        }
        if let Some(message) = lock(&self.health.error)?.take() {
            return Err(Error::Gpu { op, message });
        }
        Ok(())
    }

    /// Whether the device was lost (by the callback, or by [`Gpu::destroy`]).
    pub(super) fn is_lost(&self) -> bool {
        self.health.lost.load(Ordering::SeqCst)
    }
}
