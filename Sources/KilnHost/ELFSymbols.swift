/// Just enough ELF64 reading to ask "does this shared object export symbol X?" without dlopen.
///
/// Layout (System V gABI, https://refspecs.linuxfoundation.org/elf/gabi4+/ch4.intro.html):
///   1. ELF header: e_ident[4] = 2 (64-bit), e_ident[5] = 1 (little-endian),
///      e_shoff u64 @0x28, e_shentsize u16 @0x3A, e_shnum u16 @0x3C
///   2. section header (64 bytes): sh_type u32 @4, sh_offset u64 @24, sh_size u64 @32,
///      sh_link u32 @40, sh_entsize u64 @56; SHT_DYNSYM = 11, its sh_link is the string table
///   3. symbol (24 bytes): st_name u32 @0, st_shndx u16 @6 (0 = undefined)
enum ELFSymbols {
    static let dynsymType: UInt32 = 11
    static let symbolSize = 24
    static let sectionHeaderSize = 64

    /// True if `name` is a defined symbol in the dynamic symbol table, false if the table lacks it,
    /// nil when the file has no readable section headers (dlopen then has the last word).
    static func definesDynamic(_ name: String, in bytes: UnsafeRawBufferPointer) -> Bool? {
        guard bytes.count >= 64, bytes[4] == 2, bytes[5] == 1 else { return nil }
        func u16(_ o: Int) -> Int { Int(bytes.loadUnaligned(fromByteOffset: o, as: UInt16.self).littleEndian) }
        func u32(_ o: Int) -> Int { Int(bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self).littleEndian) }
        func u64(_ o: Int) -> Int {
            let v = bytes.loadUnaligned(fromByteOffset: o, as: UInt64.self).littleEndian
            return v > UInt64(Int.max) ? Int.max : Int(v)
        }
        func inBounds(_ offset: Int, _ length: Int) -> Bool {
            offset >= 0 && length >= 0 && offset <= bytes.count && length <= bytes.count - offset
        }
        let shoff = u64(0x28), shentsize = u16(0x3A), shnum = u16(0x3C)
        guard shentsize == sectionHeaderSize, shnum > 0, inBounds(shoff, shnum * shentsize) else { return nil }
        let wanted = Array(name.utf8)
        for i in 0..<shnum {
            let sh = shoff + i * shentsize
            guard u32(sh + 4) == Int(dynsymType) else { continue }
            let symOffset = u64(sh + 24), symSize = u64(sh + 32), link = u32(sh + 40)
            guard inBounds(symOffset, symSize), link < shnum else { return nil }
            let strHeader = shoff + link * shentsize
            let strOffset = u64(strHeader + 24), strSize = u64(strHeader + 32)
            guard inBounds(strOffset, strSize) else { return nil }
            var at = symOffset
            while at + symbolSize <= symOffset + symSize {
                let nameOffset = u32(at), section = u16(at + 6)
                at += symbolSize
                guard section != 0, nameOffset + wanted.count < strSize else { continue }
                let start = strOffset + nameOffset
                if bytes[start + wanted.count] == 0, (0..<wanted.count).allSatisfy({ bytes[start + $0] == wanted[$0] }) {
                    return true
                }
            }
        }
        return false
    }
}
