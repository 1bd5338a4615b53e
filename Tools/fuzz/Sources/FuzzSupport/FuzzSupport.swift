#if canImport(Glibc)
import Glibc
#endif
import KilnCore

/// What every fuzz target shares: a scratch folder, writing the input to a file (readers take
/// paths), the rule that a reader may only refuse with a `KilnError` that is not `.internal`
/// (anything else is the CLI's exit code 2, a bug), and reading every tensor a reader accepted.
public enum Fuzz {
    /// A scratch folder of this process, removed at exit.
    public static let folder: String = {
        var template = Array("/tmp/kiln-fuzz-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        let path = String(cString: made!)
        atexit { AtomicOutput.removeTree(Fuzz.folder) }
        return path
    }()

    /// `folder/name`, with parent folders created.
    public static func path(_ name: String) -> String {
        let full = folder + "/" + name
        var at = folder
        for part in name.split(separator: "/").dropLast() {
            at += "/" + part
            mkdir(at, 0o755)
        }
        return full
    }

    /// Write `bytes` to `folder/name` (created or truncated); the full path.
    @discardableResult
    public static func write(_ bytes: UnsafeRawBufferPointer, to name: String) -> String {
        let full = path(name)
        let fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        precondition(fd >= 0, "cannot create \(full)")
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            precondition(n > 0, "write failed")
            done += n
        }
        close(fd)
        return full
    }

    @discardableResult
    public static func write(_ bytes: [UInt8], to name: String) -> String {
        bytes.withUnsafeBytes { write($0, to: name) }
    }

    @discardableResult
    public static func write(_ text: String, to name: String) -> String { write(Array(text.utf8), to: name) }

    /// Remove `folder/name` if present.
    public static func remove(_ name: String) { unlink(folder + "/" + name) }

    /// A symbolic link `folder/name` → `target`.
    public static func link(_ name: String, to target: String) {
        let full = path(name)
        unlink(full)
        symlink(target, full)
    }

    /// Run `body`; a thrown `KilnError` of a kind other than `.internal` is a refusal (fine);
    /// any other error traps, so libFuzzer records the input.
    public static func refusalsOnly(_ body: () throws -> Void) {
        do {
            try body()
        } catch let error as KilnError {
            if error.kind == .internal { fatalError("internal error (the CLI's exit code 2): \(error)") }
        } catch {
            fatalError("not a KilnError (the CLI's exit code 2): \(error)")
        }
    }

    /// The providers of a plugin, through its descriptor, as the host gets them.
    public static func providers(_ descriptor: UnsafeRawPointer) -> [any KilnProvider] {
        let d = descriptor.assumingMemoryBound(to: kiln_plugin_descriptor.self).pointee
        let object = Unmanaged<AnyObject>.fromOpaque(d.create!()!).takeRetainedValue()
        return (object as! any KilnPluginEntry).providers
    }

    /// The reader of a plugin.
    public static func reader(_ descriptor: UnsafeRawPointer) -> any FormatReader {
        providers(descriptor).compactMap { $0 as? any FormatReader }.first!
    }

    /// The writer of a plugin.
    public static func writer(_ descriptor: UnsafeRawPointer) -> any FormatWriter {
        providers(descriptor).compactMap { $0 as? any FormatWriter }.first!
    }

    /// Largest tensor whose bytes `touch` reads (bigger ones are skipped: a valid header may
    /// describe gigabytes that a fuzz input does not hold, but the reader already checked that).
    public static let touchLimit = 1 << 22

    /// Read the bytes of every tensor of `model` (and of its quantization scales), as a writer
    /// would, so that lazy tensors (mapped, converted, deferred) run their code.
    public static func touch(_ model: Model) throws {
        var sum: UInt8 = 0
        for t in model.tensors {
            for x in [t, t.quant?.scale, t.quant?.zeroPoint, t.quant?.preQuantScale, t.quant?.inputScale].compactMap({ $0 })
            where x.byteCount <= touchLimit {
                try x.streamBytes(chunkBytes: 4096) { chunk in
                    if let last = chunk.last { sum &+= last }
                }
                if x.dtype.isFloat, !x.dtype.isPacked, x.dtype != .f32, x.elementCount <= touchLimit / 4 {
                    try x.converted(to: .f32).streamBytes { _ in }
                }
            }
        }
        blackHole(sum)
    }

    @inline(never)
    public static func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }
}
