package main

// CPU and memory of the server's process tree, from /proc (utime+stime of every process whose
// ancestor is the server's pid; VmRSS and VmHWM summed over the tree).

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const clockTicks = 100 // USER_HZ on Linux

type treeSample struct {
	cpu       time.Duration
	rssKB     int64
	hwmKB     int64
	processes int
}

// readStat returns ppid and utime+stime (ticks) of pid.
func readStat(pid int) (ppid int, ticks int64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// Fields after the command name (which may contain spaces) start after the last ')'.
	r := bytes.LastIndexByte(b, ')')
	if r < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[r+1:]))
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ppid, ut + st, true
}

func readMem(pid int) (rss, hwm int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			hwm, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return
}

// treePids: root and all its descendants.
func treePids(root int) []int {
	if root <= 0 {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, ok := readStat(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

func sampleTree(root int) treeSample {
	var s treeSample
	for _, pid := range treePids(root) {
		_, t, ok := readStat(pid)
		if !ok {
			continue
		}
		s.processes++
		s.cpu += time.Duration(t) * time.Second / clockTicks
		rss, hwm := readMem(pid)
		s.rssKB += rss
		s.hwmKB += hwm
	}
	return s
}

// selfCPU: the generator's own user+system CPU.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func selfRSSKB() (rss, hwm int64) { return readMem(os.Getpid()) }

// coreBusy: busy ticks of one CPU core (all processes) from /proc/stat, to tell how much of the
// server's core other work took.
func coreBusy(core int) time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	prefix := "cpu" + strconv.Itoa(core) + " "
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		var busy int64
		for i, v := range f[1:] {
			if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
				continue
			}
			x, _ := strconv.ParseInt(v, 10, 64)
			busy += x
		}
		return time.Duration(busy) * time.Second / clockTicks
	}
	return 0
}

// physicalMemory is MemTotal from /proc/meminfo in bytes; 0 when unknown.
func physicalMemory() int64 {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
