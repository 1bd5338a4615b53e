import ArgumentParser
import KilnCore
import KilnHost

/// `kiln plugins`: what is loaded, from where, and what was shadowed or refused.
struct PluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "List the format and optimization plugins kiln found, their capabilities and paths."
    )

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let registry = try global.registry()
        if global.json {
            print(PluginsCommand.json(registry).serialized(pretty: true))
            return
        }
        var rows: [[String]] = [["NAME", "KIND", "PLUGIN", "VERSION", "CAPABILITIES", "PATH"]]
        for e in registry.active {
            rows.append([e.provider.name, e.provider.kind.rawValue, e.plugin.name, e.plugin.version,
                         e.provider.capabilities.joined(separator: ","), e.plugin.path])
        }
        print(Table.render(rows))
        if !registry.shadowed.isEmpty {
            print("\nShadowed (a provider of the same name was found first):")
            for e in registry.shadowed { print("  \(e.provider.kind.rawValue) \(e.provider.name) from \(e.plugin.path)") }
        }
        if !registry.refused.isEmpty {
            print("\nRefused:")
            for r in registry.refused { print("  \(r.error)") }
        }
    }

    static func json(_ registry: PluginRegistry) -> JSONValue {
        func provider(_ e: PluginRegistry.Entry) -> JSONValue {
            .object(JSONObject([
                ("name", .string(e.provider.name)), ("kind", .string(e.provider.kind.rawValue)),
                ("plugin", .string(e.plugin.name)), ("version", .string(e.plugin.version)),
                ("capabilities", .array(e.provider.capabilities.map { .string($0) })),
                ("summary", .string(e.provider.summary)), ("path", .string(e.plugin.path)),
            ]))
        }
        return .object(JSONObject([
            ("abi", .string(PluginStamp.host.description)),
            ("providers", .array(registry.active.map(provider))),
            ("shadowed", .array(registry.shadowed.map(provider))),
            ("refused", .array(registry.refused.map { .object(JSONObject([("path", .string($0.path)), ("error", .string($0.error.description))])) })),
        ]))
    }
}

/// Plain-text tables with aligned columns.
enum Table {
    static func render(_ rows: [[String]], rightAligned: Set<Int> = []) -> String {
        guard let first = rows.first else { return "" }
        var widths = [Int](repeating: 0, count: first.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in
                let pad = String(repeating: " ", count: widths[i] - c.count)
                if i == r.count - 1 && !rightAligned.contains(i) { return c }
                return rightAligned.contains(i) ? pad + c : c + pad
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
