// numpy .npz byte layout. An .npz file is a zip archive whose members are .npy files:
// `np.savez` stores them (method 0), `np.savez_compressed` deflates them (method 8).
// Member `x.npy` holds the array saved under the key `x`.
//
// ZIP — PKWARE APPNOTE.TXT 6.3.10, https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT
// All integers little-endian. The file is read from its end:
//
//   1. local file header (§4.3.7), at each member's offset, then the member's data:
//        0  u32  signature 0x04034B50 ("PK\3\4")
//        4  u16  version needed          6  u16  flags (bit 0: encrypted, bit 3: data descriptor)
//        8  u16  method (0 stored, 8 deflate)
//       10  u16  time                   12  u16  date
//       14  u32  crc-32                 18  u32  compressed size    22  u32  uncompressed size
//       26  u16  name length n          28  u16  extra length e
//       30  name (n bytes), extra (e bytes), then the data (compressed size bytes)
//      numpy writes every member with `force_zip64=True`: the local sizes are 0xFFFFFFFF and
//      the real ones sit in a zip64 extra field. The central directory is authoritative;
//      the reader uses the local header only to find where the data starts (30 + n + e).
//   2. central directory header (§4.3.12), one per member, back to back:
//        0  u32  signature 0x02014B50 ("PK\1\2")
//        4  u16  version made by         6  u16  version needed     8  u16  flags
//       10  u16  method                 12  u16  time              14  u16  date
//       16  u32  crc-32                 20  u32  compressed size   24  u32  uncompressed size
//       28  u16  name length n          30  u16  extra length e    32  u16  comment length c
//       34  u16  disk number start      36  u16  internal attrs    38  u32  external attrs
//       42  u32  local header offset
//       46  name (n bytes, UTF-8 when flag bit 11 is set), extra (e bytes), comment (c bytes)
//   3. zip64 end of central directory record (§4.3.14), only when a field of 5. overflows:
//        0  u32  signature 0x06064B50    4  u64  size of the rest of this record
//       12  u16  version made by        14  u16  version needed
//       16  u32  this disk              20  u32  disk holding the central directory
//       24  u64  entries on this disk   32  u64  entries in total
//       40  u64  central directory size 48  u64  central directory offset
//   4. zip64 end of central directory locator (§4.3.15), 20 bytes just before 5.:
//        0  u32  signature 0x07064B50    4  u32  disk of record 3.
//        8  u64  offset of record 3.    16  u32  number of disks
//   5. end of central directory record (§4.3.16), 22 bytes + comment, at the end of the file:
//        0  u32  signature 0x06054B50    4  u16  this disk          6  u16  disk holding the CD
//        8  u16  entries on this disk   10  u16  entries in total
//       12  u32  central directory size 16  u32  central directory offset
//       20  u16  comment length c       22  comment (c bytes, at most 65535)
//
//   Zip64 extended information extra field (§4.5.3), tag 0x0001, in the extra bytes of 1./2.:
//        0  u16  tag 0x0001              2  u16  data size
//        4  then, in this order and ONLY for the 32-bit fields of the header that are 0xFFFFFFFF:
//           u64 uncompressed size, u64 compressed size, u64 local header offset, u32 disk.
//
// NPY — https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
//
//   1. magic "\x93NUMPY" (6 bytes)
//   2. u8 major, u8 minor version: 1.0, 2.0 or 3.0
//   3. header length: u16 (1.0) or u32 (2.0, 3.0)
//   4. header: a Python dict literal, ASCII (1.0, 2.0) or UTF-8 (3.0), padded with spaces
//      and ended by '\n' so that 1.–4. end on a multiple of 64 bytes:
//        {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//   5. data: product(shape) × itemsize bytes (1 element for shape `()`), C order unless
//      fortran_order is True.

import KilnCore

/// Signatures and fixed sizes of the zip records (numbers as in the table above).
enum ZipLayout {
    static let localSignature: UInt32 = 0x0403_4B50
    static let centralSignature: UInt32 = 0x0201_4B50
    static let zip64EndSignature: UInt32 = 0x0606_4B50
    static let zip64LocatorSignature: UInt32 = 0x0706_4B50
    static let endSignature: UInt32 = 0x0605_4B50

    static let localHeaderSize = 30
    static let centralHeaderSize = 46
    static let zip64EndSize = 56
    static let zip64LocatorSize = 20
    static let endSize = 22
    static let maxCommentLength = 0xFFFF

    /// A 32-bit size or offset with this value means "see the zip64 extra field / record".
    static let saturated32: UInt32 = 0xFFFF_FFFF
    static let saturated16: UInt16 = 0xFFFF
    static let zip64ExtraTag: UInt16 = 0x0001

    /// Flag bits (§4.4.4).
    static let flagEncrypted: UInt16 = 1 << 0
    static let flagUTF8: UInt16 = 1 << 11

    /// Compression methods this reader understands (§4.4.5).
    enum Method: UInt16 {
        case stored = 0
        case deflate = 8
    }

    /// The first four bytes of a zip file: a local header, or the end record of an empty archive.
    static let magics: [[UInt8]] = [[0x50, 0x4B, 0x03, 0x04], [0x50, 0x4B, 0x05, 0x06]]
}

/// Fixed parts of the .npy layout (numbers as in the table above).
enum NPYLayout {
    static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)
    /// Magic + version + u16 length (1.0).
    static let prelude1 = 10
    /// Magic + version + u32 length (2.0, 3.0).
    static let prelude2 = 12
    static let versions: Set<UInt8> = [1, 2, 3]
    static let memberSuffix = ".npy"

    /// numpy's `dtype.str` → numpy's type name. numpy spells the one-byte types with `|` (byte
    /// order not applicable); Kiln holds little-endian data only. bfloat16 and the float8 types
    /// are not numpy dtypes (ml_dtypes saves them as raw `|V2` / `|V1`).
    static let numpyNames: [(descr: String, numpy: String)] = [
        ("<f8", "float64"), ("<f4", "float32"), ("<f2", "float16"),
        ("<i8", "int64"), ("<i4", "int32"), ("<i2", "int16"), ("|i1", "int8"),
        ("<u8", "uint64"), ("<u4", "uint32"), ("<u2", "uint16"), ("|u1", "uint8"), ("|b1", "bool"),
    ]

    /// The dtypes this reader accepts: those of ``numpyNames`` that the KilnCore it runs with
    /// has (looked up by the `numpy` column of `DType.table`, so a newer KilnCore adds types
    /// without a change here).
    static let dtypes: [(descr: String, dtype: DType)] = numpyNames.compactMap { entry in
        DType.allCases.first { $0.traits.numpy == entry.numpy }.map { (entry.descr, $0) }
    }
}

/// Bounds checked before the reader trusts a number from the file.
enum Limits {
    /// Most members accepted in one archive (checked before the central directory is read).
    static let maxMembers = 1_000_000
    /// Largest .npy header accepted (numpy itself refuses more than 10,000 bytes by default).
    static let maxNPYHeaderBytes = 1 << 20
    /// Largest rank accepted.
    static let maxRank = 64
    /// Deflate cannot expand more than 1032:1; a member claiming more is lying (a zip bomb).
    static let maxDeflateRatio = 1032
    /// Bytes of slack allowed on top of the ratio (tiny members carry a fixed overhead).
    static let deflateSlack = 1024
}
