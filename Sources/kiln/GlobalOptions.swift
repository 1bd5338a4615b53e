import ArgumentParser
import KilnCore
import KilnHost
#if canImport(Glibc)
import Glibc
#endif

/// Options every subcommand takes: extra plugins and output style.
struct GlobalOptions: ParsableArguments {
    @Option(name: .customLong("plugin"), help: ArgumentHelp("Load a plugin library first (repeatable).", valueName: "path"))
    var plugins: [String] = []

    @Flag(name: .long, help: "Machine-readable JSON on stdout.")
    var json = false

    /// Discover plugins: --plugin, $KILN_PLUGIN_PATH, plugins/ beside the executable, the executable's folder.
    func registry() throws -> PluginRegistry {
        let env = getenv("KILN_PLUGIN_PATH").map { String(cString: $0) }
        return try PluginRegistry.discover(explicit: plugins, environment: env)
    }

    /// A context for one job, with a progress bar when stderr is a terminal.
    func context(_ options: [String: String] = [:]) -> KilnContext {
        KilnContext(options: options, progress: ProgressBar.forStderr())
    }
}

/// A one-line progress bar on stderr, drawn only when stderr is a TTY.
final class ProgressBar: ProgressSink {
    private var lastDrawn = -1
    private var label = ""

    static func forStderr() -> ProgressBar? {
        isatty(2) == 1 ? ProgressBar() : nil
    }

    func update(label: String, done: Int, total: Int) {
        guard total > 0 else { return }
        let percent = min(100, done * 100 / total)
        if percent == lastDrawn && label == self.label { return }
        lastDrawn = percent
        self.label = label
        let width = 30
        let filled = percent * width / 100
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        fputs("\r\(label) \(bar) \(percent)%", stderr)
        if done >= total { fputs("\n", stderr) }
    }

    deinit {
        if lastDrawn >= 0 && lastDrawn < 100 { fputs("\n", stderr) }
    }
}
