package main

// A minimal reader of USDT (SystemTap SDT) probes from an ELF file's .note.stapsdt, for the
// floor of the Python measurement: where the probe is in the file and where its semaphore is.
// (The receiver has its own parser under receiver/ebpfreceiver/internal/, which Go's internal
// rule keeps out of reach of this command.)

import (
	"bytes"
	"debug/elf"
	"fmt"
)

type usdtProbe struct {
	provider, name, args string
	fileOffset           uint64 // where a uprobe attaches
	semaphoreOffset      uint64 // the uprobe's reference counter (0: none)
}

func readUSDT(path, provider, name string) (usdtProbe, error) {
	f, err := elf.Open(path)
	if err != nil {
		return usdtProbe{}, err
	}
	defer f.Close()
	sec := f.Section(".note.stapsdt")
	if sec == nil {
		return usdtProbe{}, fmt.Errorf("%s has no .note.stapsdt section (built without USDT probes)", path)
	}
	data, err := sec.Data()
	if err != nil {
		return usdtProbe{}, err
	}
	var base uint64
	if s := f.Section(".stapsdt.base"); s != nil {
		base = s.Addr
	}
	order := f.ByteOrder
	var seen []string
	for len(data) >= 12 {
		namesz, descsz, typ := order.Uint32(data[0:]), order.Uint32(data[4:]), order.Uint32(data[8:])
		data = data[12:]
		nlen, dlen := align4(namesz), align4(descsz)
		if uint64(len(data)) < nlen+dlen {
			break
		}
		owner := string(bytes.TrimRight(data[:namesz], "\x00"))
		desc := data[nlen : nlen+uint64(descsz)]
		data = data[nlen+dlen:]
		if owner != "stapsdt" || typ != 3 || len(desc) < 24 {
			continue
		}
		pc, linkBase, sem := order.Uint64(desc[0:]), order.Uint64(desc[8:]), order.Uint64(desc[16:])
		strs := bytes.SplitN(desc[24:], []byte{0}, 4)
		if len(strs) < 3 {
			continue
		}
		p := usdtProbe{provider: string(strs[0]), name: string(strs[1]), args: string(strs[2])}
		seen = append(seen, p.provider+":"+p.name)
		if p.provider != provider || p.name != name {
			continue
		}
		if base != 0 && linkBase != 0 { // prelink moved the file
			pc += base - linkBase
			if sem != 0 {
				sem += base - linkBase
			}
		}
		if p.fileOffset, err = fileOffset(f, pc); err != nil {
			return p, err
		}
		if sem != 0 {
			if p.semaphoreOffset, err = fileOffset(f, sem); err != nil {
				return p, err
			}
		}
		return p, nil
	}
	return usdtProbe{}, fmt.Errorf("%s has no USDT probe %s:%s (it has %v)", path, provider, name, seen)
}

func fileOffset(f *elf.File, addr uint64) (uint64, error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && addr < p.Vaddr+p.Filesz {
			return addr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no loadable segment", addr)
}

func align4(n uint32) uint64 { return (uint64(n) + 3) &^ 3 }
