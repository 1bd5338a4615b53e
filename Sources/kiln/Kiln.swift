import ArgumentParser
import KilnCore
#if canImport(Glibc)
import Glibc
#endif

/// `kiln`: turn trained models into engine-ready, optimized checkpoints.
@main
struct Kiln: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kiln",
        abstract: "Turn trained models into engine-ready, optimized checkpoints.",
        discussion: "Formats and optimizations are plugins loaded at run time; see `kiln plugins`.",
        version: "kiln 0.1.0 (plugin ABI \(kiln_abi_version()), SDK \(String(cString: kiln_sdk_version())))",
        subcommands: [
            InspectCommand.self, ConvertCommand.self, QuantizeCommand.self, SparsifyCommand.self, EvalCommand.self,
            CompareCommand.self, GenerateCommand.self, EmbedCommand.self, RunCommand.self, PluginsCommand.self, DemoCommand.self,
        ]
    )

    /// Exit codes: 0 ok, 1 bad input or usage, 2 internal error.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as KilnError {
            fail(error)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            let message = fullMessage(for: error)
            if !message.isEmpty { writeStderr("error: " + message) }
            Glibc.exit(code == ExitCode(2) ? 2 : 1)
        }
    }

    static func fail(_ error: KilnError) -> Never {
        writeStderr("error: \(error)")
        Glibc.exit(error.kind == .internal ? 2 : 1)
    }
}

func writeStderr(_ line: String) {
    let text = line.hasSuffix("\n") ? line : line + "\n"
    fputs(text, stderr)
}
