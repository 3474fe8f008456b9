package bank

import (
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
)

// Customer is one row of the synthetic customer database. Every value is made up, but shaped
// like the real thing (Luhn-valid card numbers, well-formed SSNs) so that detectors and
// redaction in the collector see realistic secrets.
type Customer struct {
	ID           string
	Name         string
	Email        string
	CardNumber   string
	SSN          string
	BalanceCents int64
}

// customerSeed makes every generated database the same, run after run.
const customerSeed = 20251125

// csvHeader is the customer database's first line; customer-agent reads the columns by name.
var csvHeader = []string{"id", "name", "email", "card_number", "ssn", "balance_cents"}

var (
	firstNames = []string{"Maria", "James", "Aisha", "Wei", "Olga", "Carlos", "Fatima", "John", "Yuki", "Priya",
		"Liam", "Sofia", "Ahmed", "Emma", "Kwame", "Elena", "Noah", "Chloe", "Ivan", "Grace"}
	lastNames = []string{"Garcia", "Smith", "Khan", "Zhang", "Petrova", "Silva", "Haddad", "Miller", "Tanaka", "Patel",
		"Murphy", "Rossi", "Hassan", "Brown", "Mensah", "Novak", "Wilson", "Martin", "Ivanov", "Okafor"}
)

// GenerateCustomers makes n customers, C1001 upwards, the same ones for the same seed. Card
// numbers and SSNs are unique; balances are between $500 and $50,000 so that any low-value
// transfer can succeed.
func GenerateCustomers(n int, seed uint64) []Customer {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	seen := map[string]bool{}
	unique := func(gen func() string) string {
		for {
			if v := gen(); !seen[v] {
				seen[v] = true
				return v
			}
		}
	}
	out := make([]Customer, n)
	for i := range out {
		first, last := firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))]
		id := fmt.Sprintf("C%d", 1001+i)
		out[i] = Customer{
			ID:           id,
			Name:         first + " " + last,
			Email:        unique(func() string { return strings.ToLower(first+"."+last) + strconv.Itoa(r.IntN(100)) + "@example.com" }),
			CardNumber:   unique(func() string { return cardNumber(r) }),
			SSN:          unique(func() string { return ssn(r) }),
			BalanceCents: 50_000 + r.Int64N(5_000_000-50_000),
		}
	}
	return out
}

// cardNumber is a 16-digit Visa- or Mastercard-shaped number with a valid Luhn check digit.
func cardNumber(r *rand.Rand) string {
	prefixes := []string{"4", "51", "52", "53", "54", "55"}
	var b strings.Builder
	b.WriteString(prefixes[r.IntN(len(prefixes))])
	for b.Len() < 15 {
		b.WriteByte(byte('0' + r.IntN(10)))
	}
	payload := b.String()
	return payload + strconv.Itoa(luhnCheckDigit(payload))
}

// luhnCheckDigit is the digit that makes payload+digit pass the Luhn check: the payload's
// rightmost digit is doubled, as it will be second from the right.
func luhnCheckDigit(payload string) int {
	sum := 0
	for i := len(payload) - 1; i >= 0; i-- {
		d := int(payload[i] - '0')
		if (len(payload)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return (10 - sum%10) % 10
}

// LuhnValid reports whether number is all digits (at least two) and passes the Luhn check.
func LuhnValid(number string) bool {
	if len(number) < 2 {
		return false
	}
	for _, c := range number {
		if c < '0' || c > '9' {
			return false
		}
	}
	last := len(number) - 1
	return luhnCheckDigit(number[:last]) == int(number[last]-'0')
}

// ssn is AAA-GG-SSSS with a valid area (001-899 but not 666), group 01-99, serial 0001-9999.
func ssn(r *rand.Rand) string {
	area := 1 + r.IntN(898)
	if area >= 666 {
		area++ // skip 666: 1..665 and 667..899
	}
	return fmt.Sprintf("%03d-%02d-%04d", area, 1+r.IntN(99), 1+r.IntN(9999))
}

// WriteCustomers writes the database as CSV with the header id,name,email,card_number,ssn,balance_cents.
func WriteCustomers(path string, customers []Customer) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write(csvHeader)
	for _, c := range customers {
		w.Write([]string{c.ID, c.Name, c.Email, c.CardNumber, c.SSN, strconv.FormatInt(c.BalanceCents, 10)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadCustomers reads a database written by WriteCustomers.
func ReadCustomers(path string) ([]Customer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) == 0 || strings.Join(rows[0], ",") != strings.Join(csvHeader, ",") {
		return nil, fmt.Errorf("%s: header is not %s", path, strings.Join(csvHeader, ","))
	}
	out := make([]Customer, 0, len(rows)-1)
	for i, row := range rows[1:] {
		balance, err := strconv.ParseInt(row[5], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, i+2, err)
		}
		out = append(out, Customer{ID: row[0], Name: row[1], Email: row[2], CardNumber: row[3], SSN: row[4], BalanceCents: balance})
	}
	return out, nil
}
