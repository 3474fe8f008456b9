package redact

// group is one run of digits [start, end) in a number chain.
type group struct{ start, end int }

func (g group) len() int { return g.end - g.start }

// numbers handles a run of digits starting at s[i]. It reads the whole chain
// of digit groups joined by single spaces or dashes ("4111 1111 1111 1111",
// "123-45-6789", or just "4111111111111111") and looks for cards and SSNs in
// it. Cards and SSNs are made of whole groups, never part of one: a card
// inside a longer digit run is not a card. It returns the end of the chain.
func (sc *scanner) numbers(i int) int {
	s := sc.s
	// Chains rarely have more than a few groups: keeping them on the stack
	// lets clean input be scanned without allocating.
	var buf [8]group
	g := buf[:0]
	for {
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		g = append(g, group{i, j})
		if j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && isDigit(s[j+1]) {
			i = j + 1
			continue
		}
		break
	}
	sc.cards(g)
	sc.ssns(g)
	if sc.truncated {
		sc.tail(g)
	}
	return g[len(g)-1].end
}

// cards masks payment card numbers: 13–19 digits passing the Luhn check,
// either as one run or in the groupings printed on cards and typed in forms
// (4-4-4-4, 4-4-4-4-3, 4-4-4-1 for 13-digit Visa, 4-6-5 for American
// Express, 4-6-4 for Diners Club). Only these layouts are accepted for
// separated numbers because a chain of short numbers ("sizes 100 200 300 400
// 500") passes Luhn one time in ten.
//
// Every start is tried and overlapping matches are merged later, so that a
// number that happens to pass Luhn together with the first groups of a real
// card cannot hide the card's remaining groups.
func (sc *scanner) cards(g []group) {
	s := sc.s
	fours := func(from, to int) bool { // groups [from, to) all have 4 digits
		for k := from; k < to; k++ {
			if g[k].len() != 4 {
				return false
			}
		}
		return true
	}
	card := func(a, b int) bool { // groups a..b inclusive pass Luhn
		if luhn(s[g[a].start:g[b].end]) {
			sc.add(g[a].start, g[b].end, kindCard, prioCard)
			return true
		}
		return false
	}
	for k := range g {
		n := g[k].len()
		if n >= 13 && n <= 19 {
			card(k, k)
			continue
		}
		if n != 4 {
			continue
		}
		switch {
		case k+4 < len(g) && fours(k+1, k+4) && g[k+4].len() <= 3 && card(k, k+4):
		case k+3 < len(g) && fours(k+1, k+3) && g[k+3].len() <= 4 && card(k, k+3):
		}
		if k+2 < len(g) && g[k+1].len() == 6 && (g[k+2].len() == 5 || g[k+2].len() == 4) {
			card(k, k+2)
		}
	}
}

// luhn reports whether the digits of s (other bytes are skipped) pass the
// Luhn checksum used by all payment card numbers.
func luhn(s string) bool {
	sum := 0
	double := false
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if !isDigit(c) {
			continue
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// ssns masks US Social Security numbers written AAA-GG-SSSS or AAA GG SSSS,
// with the same separator twice and numbers the SSA never issues excluded.
//
// Nine bare digits are deliberately NOT treated as an SSN: any nine-digit
// number (ids, amounts, phone fragments, timestamps' parts) would match, and
// nothing in the digits themselves tells an SSN apart. The separated form is
// distinctive enough to mask without context.
func (sc *scanner) ssns(g []group) {
	s := sc.s
	for k := 0; k+2 < len(g); k++ {
		if g[k].len() != 3 || g[k+1].len() != 2 || g[k+2].len() != 4 {
			continue
		}
		sep := s[g[k].end]
		if s[g[k+1].end] != sep || !sc.ssnAlone(g, k, k+2, sep) {
			continue
		}
		a, gr, sr := s[g[k].start:g[k].end], s[g[k+1].start:g[k+1].end], s[g[k+2].start:g[k+2].end]
		if validArea(a) && gr != "00" && sr != "0000" {
			sc.add(g[k].start, g[k+2].end, kindSSN, prioSSN)
		}
	}
}

// ssnAlone reports whether groups a..b are not part of a longer number using
// the same separator, such as the phone number 1-800-55-1234 or an id like
// 2024-123-45-6789.
func (sc *scanner) ssnAlone(g []group, a, b int, sep byte) bool {
	s := sc.s
	if a > 0 && s[g[a-1].end] == sep {
		return false
	}
	if b+1 < len(g) && s[g[b].end] == sep {
		return false
	}
	return true
}

// validArea reports whether a three-digit SSN area number can be issued:
// 000, 666 and 900–999 never are.
func validArea(a string) bool {
	return a != "000" && a != "666" && a[0] != '9'
}

// tail handles a number chain at the very end of a truncated capture. A card
// number cut by the bound cannot be Luhn-checked (its check digit is gone),
// yet its first digits are exactly the part that must not leak; so 12 or more
// digits at the cut point in a card-like layout are masked as a card without
// the check. Fewer digits are left alone, as are chains of 20 or more digits,
// which are already too long to be a card. Likewise the start of an SSN
// (AAA-GG or AAA-GG-S..) at the cut point is masked.
func (sc *scanner) tail(g []group) {
	s := sc.s
	last := len(g) - 1
	end := g[last].end
	if end != len(s) && (end != len(s)-1 || (s[end] != ' ' && s[end] != '-')) {
		return
	}

	if n := g[last].len(); n < 20 {
		k, total := last, n
		if n < 12 {
			for k > 0 && g[k-1].len() >= 4 && g[k-1].len() <= 6 && total+g[k-1].len() <= 19 {
				k--
				total += g[k].len()
			}
		}
		if total >= 12 {
			sc.add(g[k].start, end, kindCard, prioCard)
		}
	}

	k := -1
	switch {
	case last >= 2 && g[last-2].len() == 3 && g[last-1].len() == 2 && g[last].len() <= 3 &&
		s[g[last-2].end] == s[g[last-1].end]:
		k = last - 2
	case last >= 1 && g[last-1].len() == 3 && g[last].len() == 2:
		k = last - 1
	}
	if k >= 0 {
		sep := s[g[k].end]
		if sc.ssnAlone(g, k, last, sep) && validArea(s[g[k].start:g[k].end]) {
			sc.add(g[k].start, end, kindSSN, prioSSN)
		}
	}
}
