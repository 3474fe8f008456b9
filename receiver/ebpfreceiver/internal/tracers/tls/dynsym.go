package tls

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
)

// The OpenSSL functions the probes need are found in a program's dynamic symbol table by name
// through its GNU hash table (.gnu.hash), as the dynamic linker finds them: a few hundred bytes
// read per name, however large the program. Node 20 exports 75,000 dynamic symbols (a 1.8 MB
// .dynsym, 5.3 MB of names) and carries a 110,000-entry .symtab: reading them all (debug/elf's
// DynamicSymbols, then cilium/ebpf's symbol load for each uprobe by name, which reads .symtab
// too) took 0.3-0.9 s on the receiver's reader goroutine for each new node file. Only a program
// without .gnu.hash (sysv-hash-only or hostile) has its whole .dynsym read, within
// elfinfo.CheckSymbols' bounds.

// sslSymbols are the names looked up: the probed functions (sslFunctions) and SSL_free.
var sslSymbols = []string{"SSL_read", "SSL_read_ex", "SSL_write", "SSL_write_ex", "SSL_free"}

// maxHashChain bounds the entries of one hash chain walked for a name. A real table's chains
// are a few entries long; a hostile one could chain every symbol (millions of reads).
const maxHashChain = 4096

// sslOffsets are the file offsets of the OpenSSL functions a file defines, by name (absent: not
// defined there, or not in an executable segment: nothing a uprobe could be put on).
type sslOffsets map[string]uint64

// exports: SSL_read and SSL_write both defined, OpenSSL (or a fork with its ABI).
func (o sslOffsets) exports() bool { return o["SSL_read"] != 0 && o["SSL_write"] != 0 }

// opensslOffsets reads an ELF file chosen by a traced process (hostile): every read is bounded
// and debug/elf's panics are recovered.
func opensslOffsets(r io.ReaderAt) (sslOffsets, error) { return offsetsOf(r, true) }

// offsetsOf reads the offsets through the GNU hash table when byHash and the file has one, else
// from the whole dynamic symbol table (the tests compare both).
func offsetsOf(r io.ReaderAt, byHash bool) (sslOffsets, error) {
	offs := sslOffsets{}
	err := elfinfo.Guard(func() error {
		f, err := elf.NewFile(r)
		if err != nil {
			return err
		}
		syms, err := definedBy(f, byHash)
		if err != nil || syms == nil {
			return err
		}
		for name, s := range syms {
			if off, ok := codeOffset(f, s.Value); ok {
				offs[name] = off
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return offs, nil
}

// definedBy returns the symbols of sslSymbols that f's dynamic symbol table defines as
// functions; nil without a dynamic symbol table (a static program).
func definedBy(f *elf.File, byHash bool) (map[string]elf.Symbol, error) {
	dynsym := f.SectionByType(elf.SHT_DYNSYM)
	if dynsym == nil {
		return nil, nil
	}
	if hash := f.SectionByType(elf.SHT_GNU_HASH); byHash && hash != nil && f.Class == elf.ELFCLASS64 && f.ByteOrder == binary.LittleEndian {
		return hashLookup(f, hash, dynsym, sslSymbols)
	}
	if err := elfinfo.CheckSymbols(f, elf.SHT_DYNSYM); err != nil {
		return nil, err
	}
	all, err := f.DynamicSymbols()
	if err != nil {
		return nil, nil // an empty or unreadable table, as debug/elf sees it: nothing exported
	}
	want := map[string]bool{}
	for _, n := range sslSymbols {
		want[n] = true
	}
	out := map[string]elf.Symbol{}
	for _, s := range all {
		if want[s.Name] && defines(s.Info, s.Section, s.Value) {
			out[s.Name] = s
		}
	}
	return out, nil
}

// defines: a function defined in this file (not imported: a program linked against libssl
// lists SSL_read undefined).
func defines(info byte, section elf.SectionIndex, value uint64) bool {
	return elf.ST_TYPE(info) == elf.STT_FUNC && section != elf.SHN_UNDEF && value != 0
}

// gnuHashOf is the hash function of .gnu.hash (the dynamic linker's dl_new_hash).
func gnuHashOf(name string) uint32 {
	h := uint32(5381)
	for i := 0; i < len(name); i++ {
		h = h*33 + uint32(name[i])
	}
	return h
}

// hashLookup finds names through the ELF64 GNU hash table: header (nbuckets, symoffset,
// bloom words, bloom shift), the bloom filter (skipped: it only saves the bucket read), the
// buckets (the first symbol index of each hash's chain), then one chain word per symbol from
// symoffset on, whose low bit ends a chain.
func hashLookup(f *elf.File, hash, dynsym *elf.Section, names []string) (map[string]elf.Symbol, error) {
	if hash.Flags&elf.SHF_COMPRESSED != 0 || dynsym.Flags&elf.SHF_COMPRESSED != 0 {
		return nil, errors.New("compressed dynamic symbol table")
	}
	if int(dynsym.Link) <= 0 || int(dynsym.Link) >= len(f.Sections) || f.Sections[dynsym.Link].Type != elf.SHT_STRTAB {
		return nil, errors.New("dynamic symbol table without string table")
	}
	strtab := f.Sections[dynsym.Link]
	var hdr [16]byte
	if _, err := hash.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("read gnu hash header: %w", err)
	}
	nbuckets := uint64(binary.LittleEndian.Uint32(hdr[0:]))
	symoffset := uint64(binary.LittleEndian.Uint32(hdr[4:]))
	bloomWords := uint64(binary.LittleEndian.Uint32(hdr[8:]))
	nsyms := dynsym.Size / elf.Sym64Size
	buckets := 16 + bloomWords*8
	chains := buckets + nbuckets*4
	if nbuckets == 0 || nbuckets > elfinfo.MaxSymbols || bloomWords > elfinfo.MaxSymbols || chains > hash.Size {
		return nil, errors.New("malformed gnu hash table")
	}
	out := map[string]elf.Symbol{}
	var word [4]byte
	var sym [elf.Sym64Size]byte
	for _, name := range names {
		h := gnuHashOf(name)
		if _, err := hash.ReadAt(word[:], int64(buckets+uint64(h)%nbuckets*4)); err != nil {
			return nil, fmt.Errorf("read gnu hash bucket: %w", err)
		}
		first := uint64(binary.LittleEndian.Uint32(word[:]))
		if first == 0 || first < symoffset {
			continue // no symbol with this hash
		}
		for i, steps := first, 0; ; i, steps = i+1, steps+1 {
			if i >= nsyms || steps >= maxHashChain {
				return nil, errors.New("malformed gnu hash chain")
			}
			if _, err := hash.ReadAt(word[:], int64(chains+(i-symoffset)*4)); err != nil {
				return nil, fmt.Errorf("read gnu hash chain: %w", err)
			}
			c := binary.LittleEndian.Uint32(word[:])
			if c|1 == h|1 {
				if _, err := dynsym.ReadAt(sym[:], int64(i*elf.Sym64Size)); err != nil {
					return nil, fmt.Errorf("read dynamic symbol %d: %w", i, err)
				}
				s := elf.Symbol{
					Name:    name,
					Info:    sym[4],
					Section: elf.SectionIndex(binary.LittleEndian.Uint16(sym[6:])),
					Value:   binary.LittleEndian.Uint64(sym[8:]),
					Size:    binary.LittleEndian.Uint64(sym[16:]),
				}
				if defines(s.Info, s.Section, s.Value) && nameAt(strtab, binary.LittleEndian.Uint32(sym[0:]), name) {
					out[name] = s
					break
				}
			}
			if c&1 != 0 {
				break // end of the chain
			}
		}
	}
	return out, nil
}

// nameAt reports whether the string table holds name, NUL-terminated, at off.
func nameAt(strtab *elf.Section, off uint32, name string) bool {
	b := make([]byte, len(name)+1)
	if _, err := strtab.ReadAt(b, int64(off)); err != nil {
		return false
	}
	return string(b[:len(name)]) == name && b[len(name)] == 0
}

// codeOffset maps a function's virtual address to its file offset through the executable
// PT_LOAD segment holding it, as cilium/ebpf does for a uprobe by name; false outside one.
func codeOffset(f *elf.File, addr uint64) (uint64, bool) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && addr >= p.Vaddr && addr-p.Vaddr < p.Filesz {
			return addr - p.Vaddr + p.Off, true
		}
	}
	return 0, false
}
